"""Prints the size of one request body that bench/alertmanager.lua generates."""
import pathlib
import re

lua = pathlib.Path(__file__).with_name("alertmanager.lua").read_text()
template = re.search(r"local template = \[\[(.*?)\]\]", lua, re.S).group(1)
alert = re.search(r"local alert = \[\[(.*?)\]\]", lua, re.S).group(1)
ident = "1-1-1"
a = alert % (ident + "a", ident, ident + "a", "0001000100000002")
body = template % (a, a, ident, ident, ident)
print(len(body.encode()))
