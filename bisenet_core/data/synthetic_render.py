"""Renderer of synthetic drives: one frame of the scene model, layer by layer, far to near.

Every shape is filled twice from the same projected polygon: once with its colour into the
image and once with its class id into the label, both without anti-aliasing, so each label
pixel is exactly the class whose paint landed there. Surface detail that does not change
the class (windows, lane markings, tiles, shadows, noise) goes into the image only.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from bisenet_core.data.synthetic_draw import (
    Canvas, View, draw_bicyclist, draw_car, draw_pedestrian, draw_pole, project_quads, scaled)
from bisenet_core.data.synthetic_scene import (
    BUILDING, CAR, FAR_M, FENCE, NEAR_M, OBJECT_FAR_M, PEDESTRIAN, ROAD, SIDEWALK, TREE, Facade,
    Pole, World)


# Per-class image noise: fine grain and low-frequency blotches (grey levels), leaf gain.
FINE_NOISE = np.array([1.5, 4, 3, 6, 5, 9, 2, 4, 3, 3, 3, 0], np.float32)
BLOTCH_NOISE = np.array([3, 6, 2, 5, 6, 12, 2, 4, 2, 3, 3, 0], np.float32)
LEAF_GAIN = np.array([0, 0, 0, 0, 0, 0.35, 0, 0, 0, 0, 0, 0], np.float32)


def render_frame(world: World, t: float, width: int, height: int,
                 noise_rng: np.random.Generator, yaw: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Render the drive at time t, camera turned `yaw` rad right: (RGB uint8 image, label)."""
    view = View(world, t, width, height, yaw)
    canvas = Canvas(width, height)
    _sky(world, view, canvas, height)
    _ground(world, view, canvas)
    _shadows(world, view, canvas, t)
    _facades(world, view, canvas)
    _objects(world, view, canvas, t)
    return _finish(world, canvas, noise_rng), canvas.label


def _sky(world: World, view: View, canvas: Canvas, height: int) -> None:
    look = world.look
    rows = np.clip(np.arange(height, dtype=np.float32) / max(view.cy, 1.0), 0, 1)[:, None]
    grad = (np.array(look.sky_top, np.float32) * (1 - rows)
            + np.array(look.sky_horizon, np.float32) * rows)
    canvas.image[:] = grad[:, None, :].astype(np.uint8)
    rng = np.random.default_rng([world.seed, 4])
    for _ in range(look.clouds):   # image only: clouds are still sky
        az, el = rng.uniform(-0.9, 0.9), rng.uniform(0.08, 0.5)
        u = view.cx + view.f * (az - view.yaw)
        v = view.cy - view.f * el
        axes = (int(view.f * rng.uniform(0.08, 0.25)), int(view.f * rng.uniform(0.02, 0.05)))
        cv2.ellipse(canvas.image, (int(u), int(v)), axes, 0, 0, 360,
                    scaled(look.sky_horizon, 1.08), -1, cv2.LINE_8)
    # The distant skyline closes the street at the far plane.
    sk = world.skyline
    xs = np.repeat(sk[:, 0], 2)[1:]
    hs = np.repeat(sk[:, 1], 2)[:-1]
    zf = view.z + FAR_M
    top = np.stack([xs, hs * 0.6, np.full(len(xs), zf)], axis=1)
    outline = np.concatenate([[(xs[0], 0.0, zf)], top, [(xs[-1], 0.0, zf)]])
    haze = tuple((np.array((150, 140, 135)) * 0.5 + np.array(look.sky_horizon) * 0.5).astype(int))
    canvas.fill([view.polygon(outline)], haze, BUILDING)


def _ground(world: World, view: View, canvas: Canvas) -> None:
    s, look = world.street, world.look
    z0, z1 = view.z - 5.0, view.z + FAR_M
    r, out = s.road_half, s.kerb_out + 12.0
    canvas.fill([view.polygon([(-r, 0, z0), (r, 0, z0), (r, 0, z1), (-r, 0, z1)])],
                look.road, ROAD)
    walks = [view.polygon([(sd * r, 0, z0), (sd * out, 0, z0), (sd * out, 0, z1), (sd * r, 0, z1)])
             for sd in (-1, 1)]
    canvas.fill(walks, look.sidewalk, SIDEWALK)
    curbs = [view.polygon([(sd * r, 0, z0), (sd * (r + 0.25), 0, z0), (sd * (r + 0.25), 0, z1),
                           (sd * r, 0, z1)]) for sd in (-1, 1)]
    canvas.fill(curbs, look.curb)
    # Paving joints, only near enough to be more than a pixel apart.
    joints = []
    for zj in np.arange(math.ceil(view.z / 2.0) * 2.0, view.z + 35.0, 2.0):
        for sd in (-1, 1):
            joints.append(view.polygon([(sd * (r + 0.25), 0, zj), (sd * s.kerb_out, 0, zj),
                                        (sd * s.kerb_out, 0, zj + 0.07),
                                        (sd * (r + 0.25), 0, zj + 0.07)]))
    canvas.fill(joints, scaled(look.sidewalk, 0.8))
    marks = [view.polygon([(a, 0, b), (c, 0, b), (c, 0, d), (a, 0, d)])
             for a, c, b, d in world.markings if d > view.z and b < z1]
    canvas.fill(marks, look.marking)


def _shadows(world: World, view: View, canvas: Canvas, t: float) -> None:
    """Shadows of sun-side buildings and of cars darken the street (image only)."""
    s = world.street
    side = world.look.sun_side
    polys = []
    for fa in world.facades:
        if fa.side != side or fa.kind == FENCE or fa.z1 < view.z or fa.z0 > view.z + FAR_M:
            continue
        if abs(fa.x) > s.kerb_out + 0.01 and fa.kind == BUILDING and fa.height < 20:
            continue
        reach = side * (s.kerb_out - min(fa.height * 0.45, s.kerb_out + s.road_half * 0.6))
        polys.append(view.polygon([(side * s.kerb_out, 0, fa.z0), (reach, 0, fa.z0 + 2),
                                   (reach, 0, fa.z1 + 2), (side * s.kerb_out, 0, fa.z1)]))
    for m in world.movers:
        if m.kind == CAR:
            x, z = m.position(t)
            if view.z < z + m.length and z < view.z + FAR_M:
                hw = m.width / 2 + 0.15
                polys.append(view.polygon([(x - hw, 0, z - 0.2), (x + hw, 0, z - 0.2),
                                           (x + hw, 0, z + m.length + 0.3),
                                           (x - hw, 0, z + m.length + 0.3)]))
    canvas.shade(polys)
    ground = canvas.shadow.astype(bool) & ((canvas.label == ROAD) | (canvas.label == SIDEWALK))
    canvas.image[ground] = (canvas.image[ground] * world.look.shadow).astype(np.uint8)


def _facades(world: World, view: View, canvas: Canvas) -> None:
    visible = [fa for fa in world.facades
               if fa.z1 > view.z and fa.z0 < view.z + FAR_M]
    # Far-set buildings first: the kerb-line strips stand in front of them.
    visible.sort(key=lambda fa: -abs(fa.x))
    for fa in visible:
        x = fa.side * fa.x
        z0, z1 = fa.z0, min(fa.z1, view.z + FAR_M)
        if fa.kind == TREE:
            _tree(view, canvas, fa, x, z0, z1)
            continue
        colour = scaled(fa.colour, fa.shade)
        canvas.fill([view.polygon([(x, 0, z0), (x, fa.height, z0), (x, fa.height, z1),
                                   (x, 0, z1)])], colour, fa.kind)
        if fa.kind == BUILDING:
            _windows(view, canvas, fa, x, z0, z1)
        else:
            _fence_slats(view, canvas, fa, x, z0, z1)


def _tree(view: View, canvas: Canvas, fa: Facade, x: float, z0: float, z1: float) -> None:
    zs = np.minimum(fa.z0 + 1.5 * np.arange(len(fa.crown)), fa.z1)
    keep = zs <= z1 + 1.5
    top = [(x, h, min(z, z1)) for z, h in zip(zs[keep], np.asarray(fa.crown)[keep])]
    colour = scaled(fa.colour, fa.shade)
    canvas.fill([view.polygon([(x, 0, z0)] + top + [(x, 0, z1)])], colour, TREE)
    # Darker under the canopy and brown trunks: texture, still labelled tree.
    canvas.fill([view.polygon([(x, 0, z0), (x, 2.2, z0), (x, 2.2, z1), (x, 0, z1)])],
                scaled(colour, 0.7))
    trunks = [view.polygon([(x, 0, z), (x, 2.4, z), (x, 2.4, z + 0.4), (x, 0, z + 0.4)])
              for z in np.arange(fa.z0 + 1.0, z1 - 0.4, 4.5) if z + 0.4 > view.z]
    canvas.fill(trunks, (85, 60, 40))


def _windows(view: View, canvas: Canvas, fa: Facade, x: float, z0: float, z1: float) -> None:
    floor, width, spacing, glass = fa.windows
    zs = np.arange(fa.z0 + 0.8, z1 - width, spacing)
    zs = zs[zs + width > view.z + NEAR_M]
    ys = np.arange(floor * 0.35, fa.height - 1.8, floor)
    if len(zs) == 0 or len(ys) == 0:
        return
    zz, yy = np.meshgrid(zs, ys)
    zz, yy = zz.ravel(), yy.ravel()
    xx = np.full_like(zz, x)
    quads = np.stack([np.stack([xx, yy, zz], 1), np.stack([xx, yy + 1.5, zz], 1),
                      np.stack([xx, yy + 1.5, zz + width], 1), np.stack([xx, yy, zz + width], 1)],
                     axis=1)
    canvas.fill(project_quads(view, quads), scaled(glass, fa.shade))


def _fence_slats(view: View, canvas: Canvas, fa: Facade, x: float, z0: float, z1: float) -> None:
    zs = np.arange(fa.z0, z1, 0.45)
    zs = zs[(zs > view.z + NEAR_M) & (zs < view.z + 40.0)]
    if len(zs):
        xx, h = np.full_like(zs, x), fa.height
        quads = np.stack([np.stack([xx, 0 * zs, zs], 1), np.stack([xx, 0 * zs + h, zs], 1),
                          np.stack([xx, 0 * zs + h, zs + 0.08], 1),
                          np.stack([xx, 0 * zs, zs + 0.08], 1)], axis=1)
        canvas.fill(project_quads(view, quads), scaled(fa.colour, fa.shade * 0.6))
    rail = [view.polygon([(x, fa.height - 0.12, z0), (x, fa.height, z0), (x, fa.height, z1),
                          (x, fa.height - 0.12, z1)])]
    canvas.fill(rail, scaled(fa.colour, fa.shade * 1.2))


def _objects(world: World, view: View, canvas: Canvas, t: float) -> None:
    """Poles, signs and movers, far to near (painter's algorithm)."""
    items = []
    for p in world.poles:
        d = view.depth(p.x, p.z)
        if NEAR_M - 1 < d < OBJECT_FAR_M:
            items.append((d, 0, p, p.x, p.z))
    for m in world.movers:
        x, z = m.position(t)
        d = view.depth(x, z)
        if NEAR_M - (m.length if m.kind == CAR else 1.0) < d < OBJECT_FAR_M:
            items.append((d, 1, m, x, z))
    items.sort(key=lambda it: -it[0])
    for _, _, obj, x, z in items:
        if isinstance(obj, Pole):
            draw_pole(view, canvas, obj)
        elif obj.kind == CAR:
            draw_car(view, canvas, obj, x, z)
        elif obj.kind == PEDESTRIAN:
            draw_pedestrian(view, canvas, obj, x, z, t)
        else:
            draw_bicyclist(view, canvas, obj, x, z, t)


def _finish(world: World, canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Texture noise per class, leaf blotches, time-of-day light, a little lens blur."""
    h, w = canvas.label.shape
    label = canvas.label
    fine = rng.standard_normal((h, w), dtype=np.float32)
    blotch = cv2.resize(rng.standard_normal((h // 8 + 2, w // 8 + 2), dtype=np.float32), (w, h),
                        interpolation=cv2.INTER_LINEAR)
    leaf = cv2.resize(rng.standard_normal((h // 3 + 2, w // 3 + 2), dtype=np.float32), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    offset = fine * FINE_NOISE[label] + blotch * BLOTCH_NOISE[label]
    gain = 1.0 + leaf * LEAF_GAIN[label]
    image = canvas.image.astype(np.float32) * gain[..., None] + offset[..., None]
    light = np.array(world.look.tint, np.float32) * world.look.brightness
    image = cv2.GaussianBlur(image * light, (3, 3), 0.6)
    return np.clip(image, 0, 255).astype(np.uint8)
