"""Code that runs INSIDE a target interpreter (a venv, an image's Python), not in sdenv's own.

Every module here is standard library only, plus the packages under test imported lazily inside
the functions that test them (a test parses each module and enforces it): target envs do not
have sdenv, rich or packaging installed. The host stages a copy of this package in an empty
directory (``sdenv._target.stage``) and runs a module of it there (``sdenv._target.command``);
each module reports back through one protocol (``sdenv.target.protocol``).
"""
