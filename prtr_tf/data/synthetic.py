"""A synthetic COCO-format keypoint dataset of stick figures, for demos and smoke tests.

Each image (320x256 by default) shows 1 to ``max_people`` articulated figures on a
textured, noisy background. A figure is drawn from a random pose (torso angle,
facing front or back, lateral foreshortening, limb angles) with the 17 COCO joints:
limbs are thick segments with one colour per limb and side (left arm red/orange,
right arm blue/cyan, left leg green/lime, right leg purple/pink), a light torso, a head
disc with coloured eyes and ears and a dark nose. Figures overlap: a joint covered by a
later figure is labelled v=1, a joint outside the image v=0 (x = y = 0), face joints of
a figure seen from the back v=0, the rest v=2.

The side colours make left/right easy to learn without flip augmentation. A mirrored
sample keeps its colours while its labels swap, so with ``config.data.flip`` the side
must be read from the face (front or back) and the body's chirality: still learnable,
a little slower.

Output (COCO person_keypoints schema, loadable with pycocotools)::

    OUT/images/000000000001.jpg ...
    OUT/person_keypoints.json      images, annotations, categories (+ info with the seed)

Deterministic: the same seed gives the same JSON and image bytes (image i depends only
on (seed, i), so a larger dataset extends a smaller one).

    python -m prtr_tf.data.synthetic --out data/synthetic --num_images 200 --seed 0
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

from prtr_tf.data.keypoint_sets import COCO_JOINTS, COCO_SKELETON

VERSION = 1
ANN_FILE = "person_keypoints.json"
IMAGE_DIR = "images"
DESCRIPTION = "prtr-tf synthetic stick figures"
MARKER = ".prtr-synthetic"  # in every folder the generator created (and may rewrite)

# Joint indices (COCO order).
(NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI,
 L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANK, R_ANK) = range(17)

# Limbs (from, to, RGB colour): distinct per limb and side.
LIMBS = (
    (L_HIP, L_KNEE, (40, 200, 40)), (L_KNEE, L_ANK, (170, 255, 60)),
    (R_HIP, R_KNEE, (190, 40, 220)), (R_KNEE, R_ANK, (255, 110, 200)),
    (L_SHO, L_ELB, (255, 40, 40)), (L_ELB, L_WRI, (255, 160, 30)),
    (R_SHO, R_ELB, (30, 80, 255)), (R_ELB, R_WRI, (30, 220, 255)),
)
SKIN = (240, 200, 150)
FACE = {NOSE: (20, 20, 20), L_EYE: (160, 0, 0), R_EYE: (0, 0, 170),
        L_EAR: (255, 90, 90), R_EAR: (90, 120, 255)}


def _unit(angle):
    return np.array([np.sin(angle), -np.cos(angle)])  # angle 0 = up (image y points down)


def random_pose(rng, height):
    """17 joints (17, 2) of a figure of total ``height`` px centred at the origin, plus
    drawing parameters (limb width, head centre and radius, facing front)."""
    t = height
    tilt = rng.normal(0, 0.25) if rng.random() < 0.85 else rng.uniform(-1.6, 1.6)
    up = _unit(tilt)
    right = np.array([-up[1], up[0]])  # image right for an upright figure
    front = rng.random() < 0.7
    lateral = (right if front else -right) * rng.uniform(0.45, 1.0)  # person's left
    neck = 0.15 * t * up
    hip = -0.15 * t * up
    j = np.zeros((17, 2))
    j[L_SHO], j[R_SHO] = neck + 0.11 * t * lateral, neck - 0.11 * t * lateral
    j[L_HIP], j[R_HIP] = hip + 0.07 * t * lateral, hip - 0.07 * t * lateral
    down = tilt + np.pi
    cross = up[0] * lateral[1] - up[1] * lateral[0]
    side = 1.0 if cross > 0 else -1.0  # rotation sign towards the person's left
    for sho, elb, wri, sgn in ((L_SHO, L_ELB, L_WRI, side), (R_SHO, R_ELB, R_WRI, -side)):
        a1 = down - sgn * rng.uniform(-0.5, 2.9)
        a2 = a1 - sgn * rng.uniform(-0.3, 2.4)
        j[elb] = j[sho] + 0.17 * t * _unit(a1)
        j[wri] = j[elb] + 0.15 * t * _unit(a2)
    for hp, kn, an, sgn in ((L_HIP, L_KNEE, L_ANK, side), (R_HIP, R_KNEE, R_ANK, -side)):
        a1 = down - sgn * rng.uniform(-0.35, 1.0)
        a2 = a1 + sgn * rng.uniform(-0.2, 1.6)
        j[kn] = j[hp] + 0.23 * t * _unit(a1)
        j[an] = j[kn] + 0.22 * t * _unit(a2)
    radius = 0.065 * t
    head = neck + 0.11 * t * _unit(tilt + rng.normal(0, 0.2))
    head_up = (head - neck) / np.linalg.norm(head - neck)
    head_left = np.array([-head_up[1], head_up[0]]) * np.sign(np.dot(
        [-head_up[1], head_up[0]], lateral))
    yaw = rng.uniform(-0.35, 0.35)
    j[NOSE] = head + radius * (-0.25 * head_up + yaw * head_left)
    j[L_EYE] = head + radius * (0.2 * head_up + (0.4 + yaw) * head_left)
    j[R_EYE] = head + radius * (0.2 * head_up + (-0.4 + yaw) * head_left)
    j[L_EAR] = head + radius * 0.95 * head_left
    j[R_EAR] = head - radius * 0.95 * head_left
    width = max(3.0, 0.055 * t)
    return j, dict(width=width, head=head, radius=radius, front=front)


def _draw_figure(draw, joints, params, colour_fn):
    """Draws one figure; ``colour_fn(rgb)`` gives the fill (a colour, or 255 for masks)."""
    w = params["width"]
    torso = [tuple(joints[k]) for k in (L_SHO, R_SHO, R_HIP, L_HIP)]
    draw.polygon(torso, fill=colour_fn(params["torso"]))
    for a, b, colour in LIMBS:
        fill = colour_fn(colour)
        draw.line([tuple(joints[a]), tuple(joints[b])], fill=fill, width=int(round(w)))
        for p in (joints[a], joints[b]):
            draw.ellipse([p[0] - w / 2, p[1] - w / 2, p[0] + w / 2, p[1] + w / 2], fill=fill)
    hx, hy = params["head"]
    r = params["radius"]
    draw.line([tuple((joints[L_SHO] + joints[R_SHO]) / 2), (hx, hy)],
              fill=colour_fn(SKIN), width=int(round(w)))
    draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=colour_fn(SKIN))
    dot = max(1.5, 0.22 * r)
    faces = FACE.items() if params["front"] else [(k, FACE[k]) for k in (L_EAR, R_EAR)]
    for k, colour in faces:
        x, y = joints[k]
        draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=colour_fn(colour))


def _background(rng, height, width):
    """Smooth random colour field + shapes + pixel noise, in muted colours (uint8)."""
    grid = rng.uniform(60, 200, (rng.integers(3, 7), rng.integers(3, 7), 3))
    grid = grid * 0.5 + grid.mean(axis=2, keepdims=True) * 0.5  # desaturate
    image = Image.fromarray(grid.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 10)):
        grey = rng.uniform(40, 220)
        colour = tuple(int(np.clip(grey + rng.normal(0, 15), 0, 255)) for _ in range(3))
        x0, y0 = rng.uniform(-40, width), rng.uniform(-40, height)
        x1, y1 = x0 + rng.uniform(10, 120), y0 + rng.uniform(10, 120)
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 6)))
    pixels = np.asarray(image, np.float64) + rng.normal(0, rng.uniform(4, 14),
                                                         (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def render_image(rng, height=256, width=320, max_people=4):
    """One image (uint8 (H, W, 3)) and its people: list of dicts with joints (17, 3)
    [x, y, v], bbox [x, y, w, h], area and num_keypoints."""
    pixels = _background(rng, height, width)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    owner = np.zeros((height, width), np.int32)  # index + 1 of the topmost figure
    figures = []
    for _ in range(int(rng.integers(1, max_people + 1))):
        fig_h = rng.uniform(0.3, 0.95) * height
        joints, params = random_pose(rng, fig_h)
        lo, hi = joints.min(0), joints.max(0)
        half = (hi - lo) / 2 + 2
        if rng.random() < 0.8 and (half < [width / 2, height / 2]).all():  # inside
            centre = rng.uniform(half, [width - half[0], height - half[1]])
        else:  # anywhere, possibly cut by the border
            centre = rng.uniform([-0.1 * width, 0.05 * height], [1.1 * width, 0.95 * height])
        joints = joints - (lo + hi) / 2 + centre
        params["head"] = params["head"] - (lo + hi) / 2 + centre
        jitter = rng.integers(-25, 26, 3)
        params["torso"] = tuple(int(v) for v in np.clip(
            np.full(3, rng.uniform(150, 235)) + rng.normal(0, 10, 3), 0, 255))

        def colour(rgb, jitter=jitter):
            return tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(rgb, jitter))

        _draw_figure(draw, joints, params, colour)
        mask_image = Image.new("L", (width, height), 0)
        _draw_figure(ImageDraw.Draw(mask_image), joints, params, lambda rgb: 255)
        mask = np.asarray(mask_image) > 0
        if not mask.any():
            continue
        owner[mask] = len(figures) + 1
        figures.append((joints, params, mask))

    people = []
    for i, (joints, params, mask) in enumerate(figures):
        ys, xs = np.nonzero(mask)
        kps = np.zeros((17, 3))
        for k, (x, y) in enumerate(joints):
            xi, yi = int(round(x)), int(round(y))
            if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
                continue  # outside the image: v = 0
            if not params["front"] and k in (NOSE, L_EYE, R_EYE):
                continue  # face seen from the back: not labelled
            kps[k] = (round(float(x), 2), round(float(y), 2),
                      1 if owner[yi, xi] > i + 1 else 2)
        x0, y0 = int(xs.min()), int(ys.min())
        people.append(dict(
            joints=kps, bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
            area=int((owner == i + 1).sum()), num_keypoints=int((kps[:, 2] > 0).sum())))
    return np.asarray(image), people


def _generated_here(out_dir):
    """True when ``out_dir`` holds a synthetic set of this project's: the marker file,
    or (sets written before the marker existed) only our annotation file, with our
    description, and our image folder."""
    if os.path.exists(os.path.join(out_dir, MARKER)):
        return True
    if set(os.listdir(out_dir)) - {ANN_FILE, ANN_FILE + ".tmp", IMAGE_DIR}:
        return False
    try:
        with open(os.path.join(out_dir, ANN_FILE), encoding="utf-8") as f:
            return json.load(f).get("info", {}).get("description") == DESCRIPTION
    except (OSError, ValueError, AttributeError):
        return False


def claim_folder(out_dir):
    """Makes ``out_dir`` the synthetic set's own folder: created (with the marker file
    `MARKER`) when absent or empty; a folder with other files is left untouched and
    is a FileExistsError naming it (the generator never writes into a user's data)."""
    for folder in (out_dir, os.path.dirname(os.path.abspath(out_dir))):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(
                f"{folder} is a file, not a folder: point config.data.root (or --out) "
                "at a new or empty folder for the synthetic set")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not _generated_here(out_dir):
        raise FileExistsError(
            f"{out_dir} holds files that prtr-tf did not generate (no {MARKER} marker): "
            "the synthetic set is written only into a folder it creates. Point "
            "config.data.root (or --out) at a new or empty folder, or turn the generator "
            "off to use the data that is there (--config.data.synthetic='{}')")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, MARKER), "w", encoding="utf-8") as f:
        f.write("written by prtr_tf.data.synthetic; the folder may be regenerated\n")


def generate(out_dir, num_images, seed, image_size_hw=(256, 320), max_people=4,
             progress=True):
    """Writes ``num_images`` images and ``person_keypoints.json`` under ``out_dir``
    (only into a folder of its own: `claim_folder`).

    Returns the annotation file path. The JSON is written last, so a partial run is
    detected (and redone) by `ensure_synthetic`.
    """
    height, width = image_size_hw
    claim_folder(out_dir)
    image_dir = os.path.join(out_dir, IMAGE_DIR)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        pixels, people = render_image(rng, height, width, max_people)
        image_id = i + 1
        file_name = f"{image_id:012d}.jpg"
        Image.fromarray(pixels).save(os.path.join(image_dir, file_name), quality=92)
        images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
        for person in people:
            x, y, w, h = person["bbox"]
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=1, iscrowd=0,
                keypoints=[float(v) if k % 3 < 2 else int(v)
                           for k, v in enumerate(person["joints"].reshape(-1))],
                num_keypoints=person["num_keypoints"], bbox=[x, y, w, h],
                area=person["area"],
                segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
        if progress and (i + 1 == num_images or (i + 1) % max(1, num_images // 10) == 0):
            print(f"synthetic: {i + 1}/{num_images} images -> {image_dir}", file=sys.stderr,
                  flush=True)
    data = dict(
        info=dict(description=DESCRIPTION, version=VERSION, seed=seed,
                  num_images=num_images, image_size_hw=[height, width],
                  max_people=max_people),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=1, name="person", supercategory="person",
                         keypoints=list(COCO_JOINTS),
                         skeleton=[[a + 1, b + 1] for a, b in COCO_SKELETON])],
    )
    ann_file = os.path.join(out_dir, ANN_FILE)
    with open(ann_file + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(ann_file + ".tmp", ann_file)
    return ann_file


def ensure_synthetic(out_dir, num_images, seed, **kwargs):
    """Generates the dataset unless ``out_dir`` already holds it (same seed, size,
    settings and all images present). Returns the annotation file path. A folder that
    the generator did not create is never written into (`claim_folder`)."""
    ann_file = os.path.join(out_dir, ANN_FILE)
    if os.path.exists(ann_file) and _generated_here(out_dir):
        try:
            with open(ann_file, encoding="utf-8") as f:
                data = json.load(f)
            info = data.get("info", {})
            want = dict(version=VERSION, seed=seed, num_images=num_images,
                        image_size_hw=list(kwargs.get("image_size_hw", (256, 320))),
                        max_people=kwargs.get("max_people", 4))
            if all(info.get(k) == v for k, v in want.items()) and all(
                    os.path.exists(os.path.join(out_dir, IMAGE_DIR, im["file_name"]))
                    for im in data["images"]):
                return ann_file
        except (OSError, ValueError, KeyError):
            pass  # unreadable or different: regenerate
    return generate(out_dir, num_images, seed, **kwargs)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m prtr_tf.data.synthetic",
        description="Writes a synthetic COCO-format keypoint dataset of stick figures: "
                    "OUT/images/*.jpg and OUT/person_keypoints.json. The same seed gives "
                    "the same bytes.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num_images", type=int, default=200, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--height", type=int, default=256, help="image height in pixels")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels")
    parser.add_argument("--max_people", type=int, default=4, help="most figures per image")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f"--num_images must be >= 1, got {args.num_images}")
    try:
        ann_file = generate(args.out, args.num_images, args.seed, (args.height, args.width),
                            args.max_people, progress=not args.quiet)
    except FileExistsError as e:
        parser.exit(1, f"error: {e}\n")
    print(f"wrote {ann_file}")


if __name__ == "__main__":
    main()
