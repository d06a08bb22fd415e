"""Where a cockpit's run lives: in this process (local: the trainer thread and its command
channel) or in another (remote: the event file and the control socket). No Textual."""
