"""The operator station: `edge ui`, a web application run beside `edge run`.

It only reads what the line writes (the database, the image store, the decision
stage's PUB stream) and writes nothing but labels and users, so it can never slow
the line: see app.py for the pages, feed.py for the live stream.
"""
