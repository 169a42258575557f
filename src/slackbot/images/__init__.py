"""Images Gemini makes in the thread (issue 21): the functions (make.py) and their pure rules (rules.py)."""
