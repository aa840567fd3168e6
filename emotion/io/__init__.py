"""Foundations: errors, safe files and images, option types, lazy imports, the libraries' private internals."""
