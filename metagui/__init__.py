"""MetaGUI: a desktop workbench for meta-learning."""

__version__ = "0.1.0"
