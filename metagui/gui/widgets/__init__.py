"""Reusable widgets: page furniture, the buffered live plot, the hyperparameter form."""
