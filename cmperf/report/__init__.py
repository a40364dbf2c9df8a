"""Presentation: rows and tables to terminal, JSON, CSV, markdown and plots. No physics here."""
