"""The Fine-tune feature: its tab, the training child process (QProcess) and remote (SSH) runs."""
