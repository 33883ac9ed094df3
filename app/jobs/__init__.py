"""Batch ingestion: jobs of many URLs, processed by queue workers through the same analysis path."""
