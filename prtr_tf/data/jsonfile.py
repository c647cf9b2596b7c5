"""Reading the JSON files users give (annotations, detections, box lists): a file that
does not parse is an error naming the file, the position and the likely cause."""
import json
import os


def read_json(path, what="JSON file"):
    """The parsed contents of ``path``; FileNotFoundError when it does not exist,
    ValueError naming the file when it is not valid JSON (e.g. truncated)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        size = os.path.getsize(path)
        cause = ("the file ends before the JSON does: it is truncated (an interrupted "
                 "download or copy?)" if e.pos >= size - 1 else "it is not valid JSON")
        raise ValueError(f"{what} {path!r}: {cause} ({e.msg} at line {e.lineno}, column "
                         f"{e.colno}, byte {e.pos} of {size})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {path!r} is not UTF-8 text (a binary file?): {e}") from None
