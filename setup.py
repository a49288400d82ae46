"""Lists ember's packages for setuptools. The folder-to-package mapping itself is in pyproject.toml
([tool.setuptools.package-dir]); setuptools' automatic discovery cannot rename folders, so the subpackages
of each mapped folder are found here."""

from setuptools import find_packages, setup

ROOTS = {"ember": "frontend", "ember.compiler": "compiler", "ember.runtime": "runtime"}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages)
