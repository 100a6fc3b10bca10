"""The Datasets feature: its tab, the episode viewer's controller and the workers that read the store off the GUI thread."""
