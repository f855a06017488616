"""Identifier formats of SPEC §2."""

DISTRICT_ID_PATTERN = r"^[a-z0-9-]{1,32}$"
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
