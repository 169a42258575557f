"""The agent surface (issue 19): Slack's agent messaging around the chat turns.

`sessions` (a Messages-tab turn's session status and title), `surface` (suggested prompts and the App
Home view, pure), `feedback` (rating clicks, the operators' report), `shortcuts` (message shortcuts
that become turns). The listeners are in listeners/agent.py; task cards are drawn by
slack_out/delivery.py from slack_out/progress.py.
"""
