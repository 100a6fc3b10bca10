"""The demo feature (``vla-studio demo``): the scripted pipeline and its window."""
