"""Sphinx configuration for flask-thrillconnect."""

import flask_thrillconnect

project = "flask-thrillconnect"
author = "flask-thrillconnect developers"
release = flask_thrillconnect.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Type hints name third-party and private helper types that have no docs to link to.
nitpicky = False
intersphinx_mapping = {}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
