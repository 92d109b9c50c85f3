"""Pipeline stages: fetch, detect, filter, align, compare, report, export, verify."""
