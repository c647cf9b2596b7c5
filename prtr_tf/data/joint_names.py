"""Left/right flip pairs from joint names, in their common spellings.

A name is split into lower-case words at separators (``_``, ``-``, ``.``, spaces),
at camelCase boundaries and between letters and digits: ``left_eye``, ``Left Eye``,
``leftEye``, ``LEye``, ``l_eye``, ``eye_l``, ``eye_left``, ``front_left_paw`` and
``L_F_Paw`` all carry a side word (``left``/``l``, ``right``/``r``). Two joints pair
when their names are the same once the side word is removed and their sides differ
(``left_front_paw`` / ``right_front_paw``; ``L_Eye`` / ``R_Eye``). A name with two
side words, or a side whose partner is missing or not unique, pairs with nothing.
"""
import re

SIDES = {"left": "L", "l": "L", "lt": "L", "right": "R", "r": "R", "rt": "R"}
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def words(name):
    """The lower-case words of a joint name (see the module docstring)."""
    return [w.lower() for w in _WORD.findall(str(name))]


def side_and_key(name):
    """(side 'L' / 'R' or None, the name's words without the side word)."""
    ws = words(name)
    sided = [i for i, w in enumerate(ws) if w in SIDES]
    if len(sided) != 1:
        return None, tuple(ws)
    i = sided[0]
    return SIDES[ws[i]], tuple(ws[:i] + ["<side>"] + ws[i + 1:])


def derive_flip_pairs(names):
    """The 0-based index pairs (lower index first) of the left/right joints of ``names``
    (see the module docstring), in order."""
    by_key = {}
    for index, name in enumerate(names):
        side, key = side_and_key(name)
        if side is not None:
            by_key.setdefault(key, {}).setdefault(side, []).append(index)
    pairs = []
    for sides in by_key.values():
        left, right = sides.get("L", []), sides.get("R", [])
        if len(left) == 1 and len(right) == 1:
            pairs.append(tuple(sorted((left[0], right[0]))))
    return tuple(sorted(pairs))


def unpaired_sided(names, pairs):
    """Names that carry a side word but are in no pair (for warnings)."""
    paired = {i for pair in pairs for i in pair}
    return [n for i, n in enumerate(names)
            if i not in paired and side_and_key(n)[0] is not None]
