"""Scoped fixes for upstream bugs, as context managers (Ultralytics' utils/patches.py): each is
applied only around the calls that need it, only on the versions it was tested with, and names
the upstream issue so that it can be removed once upstream is fixed."""
