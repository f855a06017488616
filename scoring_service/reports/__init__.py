"""Reports for people: CSV and XLSX exports."""
