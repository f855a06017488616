"""Identifier formats of SPEC §2.

Python's ``$`` also matches before a final newline, so ``re.match`` would take
``"abc\n"`` for an id; ``(?!\n)$`` is the true end of the text and stays a valid
ECMAScript pattern for the OpenAPI document.
"""

DISTRICT_ID_PATTERN = r"^[a-z0-9-]{1,32}(?!\n)$"
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}(?!\n)$"
