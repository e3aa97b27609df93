"""Reporting: tables, plots, significance, and the audit of a results tree."""
