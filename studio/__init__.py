"""The vla-studio app shell, the tabs (controllers), Qt adapters and the CLI."""
