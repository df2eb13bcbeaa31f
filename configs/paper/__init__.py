"""Reproductions of published evidence on normalization placement (../shared/REFERENCES.md):
each file is one study with a full-protocol variant (no argument) and a scaled-down one for
a 2-core CPU (`:cpu`)."""
