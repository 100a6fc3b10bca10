"""The Record feature: its tab, the record-session thread and the rig editor dialog."""
