"""What Gemini can look up in the workspace (issue 20): the bot's functions, declared to Gemini from
their Python signatures (declare.py), the rule on who may see what they return (access.py, pure),
Slack's permalinks (links.py, pure) and the functions themselves (functions.py: Slack only through
the gateway, each call paying its budget)."""
