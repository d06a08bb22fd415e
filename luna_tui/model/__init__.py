"""The cockpit's state without Textual: the event collector and its snapshot, what is new in
it, one-line summaries, formatting, plot data and the layout rule."""
