"""Packaging beyond pyproject.toml: the curated recipes live at the top level (``prompts/*.toml``) and ship in
the wheel as the data package ``clipstyle.prompts`` (pyproject's packages.find cannot map an extra folder)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["clipstyle*"]), "clipstyle.prompts"], package_dir={"clipstyle.prompts": "prompts"})
