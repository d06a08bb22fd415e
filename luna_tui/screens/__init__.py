"""The cockpit's screens: the cockpit itself (panes, views, zoom), the confirmations, the
baseline picker and the help."""
