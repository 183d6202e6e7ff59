"""Packages: `dmod` lives in clients/python/dmod, `dmod.services` in services/ (import paths mirror folders)."""
from setuptools import find_packages, setup

client_packages = find_packages("clients/python")
service_packages = ["dmod.services"] + [f"dmod.services.{p}" for p in find_packages("services")]
setup(packages=client_packages + service_packages)
