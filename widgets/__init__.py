"""Reusable Qt widgets. They draw plain data handed to them; they never open a device or a file."""
