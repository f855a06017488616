"""Domain rules that are not arithmetic: identifiers, times, canonical JSON, rubrics, submissions."""
