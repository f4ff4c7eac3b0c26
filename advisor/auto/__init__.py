"""``peft-advise auto``: from a GPU budget and the user's data to the adapter a server loads.

One flow over the four tools (recommend → fair trial → pick a servable winner → convert when the
consumer cannot load it as trained → check → report), resumable at every stage.
"""
