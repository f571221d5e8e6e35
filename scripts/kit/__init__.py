"""The code the kit's scripts share. The scripts in scripts/ are what the Makefile runs; this
package is what they have in common, one job a module.

`python scripts/NAME.py` puts scripts/ on the import path, so the scripts import this package as
`kit`. Each script then calls `kit.project.enter()`, the one process-wide step, which also makes
`mltoy` importable. Importing the package, or any module in it, changes nothing in the process.
"""
