# All metadata lives in pyproject.toml; this file lets older tooling (``pip install -e .`` with
# legacy setuptools, ``python setup.py develop``) work too.
from setuptools import setup

setup()
