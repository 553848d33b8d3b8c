"""Drawing primitives of the synthetic drives.

Camera projection, the paired image/label canvas, and painters for street furniture and
movers (poles, signs, cars, people, bikes).

People, bikes and signs are flat shapes in a plane at constant depth (a billboard facing the
camera); cars are boxes. Every painter fills image and label from the same polygons.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from bisenet_core.data.synthetic_scene import (
    BICYCLIST, CAR, NEAR_M, PEDESTRIAN, POLE, SIGN, SKY, Mover, Pole, World)


SHIFT = 4                   # fillPoly sub-pixel bits: smooth motion without anti-aliasing
SCALE = float(1 << SHIFT)


class View:
    """Pinhole camera at one instant: world points -> sub-pixel image polygons."""

    def __init__(self, world: World, t: float, width: int, height: int, yaw: float = 0.0):
        s = world.street
        self.x, self.z, sway = s.camera_at(t)
        yaw += sway  # the camera's mounting yaw (0: forward, > 0: to the right) + the sway
        self.h = s.cam_height
        self.cos, self.sin = math.cos(yaw), math.sin(yaw)
        self.f = 0.8 * width
        self.cx = width / 2.0
        self.cy = s.horizon * height
        self.yaw = yaw

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 3) camera coordinates (right, up, forward)."""
        dx = pts[..., 0] - self.x
        dz = pts[..., 2] - self.z
        xc = dx * self.cos - dz * self.sin
        zc = dx * self.sin + dz * self.cos
        return np.stack([xc, pts[..., 1] - self.h, zc], axis=-1)

    def to_pixels(self, cam: np.ndarray) -> np.ndarray:
        """Camera points in front of the near plane -> int32 pixel coords << SHIFT."""
        u = self.cx + self.f * cam[..., 0] / cam[..., 2]
        v = self.cy - self.f * cam[..., 1] / cam[..., 2]
        uv = np.stack([u, v], axis=-1) * SCALE
        return np.clip(uv, -1e7, 1e7).astype(np.int32)

    def polygon(self, pts) -> np.ndarray | None:
        """A world polygon clipped at the near plane and projected; None when not in front."""
        cam = self.to_camera(np.asarray(pts, np.float64))
        depth = cam[:, 2]
        if depth.min() < NEAR_M:
            if depth.max() < NEAR_M:
                return None
            cam = _clip_near(cam)
        return self.to_pixels(cam)

    def depth(self, x: float, z: float) -> float:
        return (x - self.x) * self.sin + (z - self.z) * self.cos


def _clip_near(cam: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of one convex-or-not polygon against depth >= NEAR_M."""
    out = []
    n = len(cam)
    for i in range(n):
        a, b = cam[i], cam[(i + 1) % n]
        a_in, b_in = a[2] >= NEAR_M, b[2] >= NEAR_M
        if a_in:
            out.append(a)
        if a_in != b_in:
            w = (NEAR_M - a[2]) / (b[2] - a[2])
            out.append(a + w * (b - a))
    return np.array(out)


class Canvas:
    """The image (RGB uint8) and label (uint8) being painted, plus a shadow mask."""

    def __init__(self, width: int, height: int):
        self.image = np.zeros((height, width, 3), np.uint8)
        self.label = np.full((height, width), SKY, np.uint8)
        self.shadow = np.zeros((height, width), np.uint8)

    def fill(self, polys, colour, cls: int | None = None) -> None:
        """Fill projected polygons with colour; with cls, write the same pixels' class."""
        polys = [p for p in polys if p is not None]
        if not polys:
            return
        cv2.fillPoly(self.image, polys, tuple(int(c) for c in colour), cv2.LINE_8, SHIFT)
        if cls is not None:
            cv2.fillPoly(self.label, polys, int(cls), cv2.LINE_8, SHIFT)

    def shade(self, polys) -> None:
        polys = [p for p in polys if p is not None]
        if polys:
            cv2.fillPoly(self.shadow, polys, 1, cv2.LINE_8, SHIFT)


def scaled(colour, k: float) -> tuple:
    return tuple(min(255, int(c * k)) for c in colour)


def box_faces(x0, x1, y0, y1, z0, z1):
    """The quads of an axis-aligned box, keyed by face name."""
    return {
        'near': [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)],
        'left': [(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)],
        'right': [(x1, y0, z0), (x1, y0, z1), (x1, y1, z1), (x1, y1, z0)],
        'top': [(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)],
    }


def circle(ca: float, cb: float, r: float, n: int = 14) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([ca + r * np.cos(t), cb + r * np.sin(t)], axis=1)


def segment(p, q, width: float) -> np.ndarray:
    """A thick line from p to q as a quad in a 2D (a, b) plane."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9) * width / 2
    return np.array([p + n, q + n, q - n, p - n])


def board(view: View, x: float, z: float, shape2d: np.ndarray):
    """Project a 2D shape (a right, b up, metres) standing in the plane at depth z."""
    shape2d = np.asarray(shape2d, float)
    pts = np.stack([x + shape2d[:, 0], shape2d[:, 1], np.full(len(shape2d), z)], axis=1)
    return view.polygon(pts)


def project_quads(view: View, quads: np.ndarray) -> list:
    """Project many small world quads at once, dropping any that cross the near plane."""
    if len(quads) == 0:
        return []
    cam = view.to_camera(quads)
    keep = cam[..., 2].min(axis=1) >= NEAR_M
    return list(view.to_pixels(cam[keep]))


def draw_pole(view: View, canvas: Canvas, p: Pole) -> None:
    hw = p.width / 2
    canvas.fill([board(view, p.x, p.z, [(-hw, 0), (hw, 0), (hw, p.height), (-hw, p.height)])],
                p.colour, POLE)
    highlight = [(-hw, 0), (-hw * 0.3, 0), (-hw * 0.3, p.height), (-hw, p.height)]
    canvas.fill([board(view, p.x, p.z, highlight)], scaled(p.colour, 1.25))
    if p.arm:
        reach = -np.sign(p.x) * 2.2
        arm = segment((0, p.height - 0.4), (reach, p.height), 0.16)
        lamp = [(reach - 0.35, p.height - 0.2), (reach + 0.35, p.height - 0.2),
                (reach + 0.3, p.height + 0.05), (reach - 0.3, p.height + 0.05)]
        canvas.fill([board(view, p.x, p.z, arm), board(view, p.x, p.z, lamp)],
                    p.colour, POLE)
    if p.sign:
        _sign(view, canvas, p)


def _sign(view: View, canvas: Canvas, p: Pole) -> None:
    r, b = p.sign_size / 2, p.sign_height
    z = p.z - 0.08
    if p.sign == 'light':
        box = [(-0.2, b - 0.5), (0.2, b - 0.5), (0.2, b + 0.5), (-0.2, b + 0.5)]
        canvas.fill([board(view, p.x, z, box)], p.sign_colour, SIGN)
        lit = int(p.sign_height * 10) % 3
        for i, colour in enumerate(((230, 40, 30), (240, 170, 20), (40, 220, 90))):
            c = colour if i == lit else scaled(colour, 0.35)
            canvas.fill([board(view, p.x, z, circle(0, b + 0.3 - 0.3 * i, 0.11, 10))], c)
        return
    if p.sign == 'circle':
        outer, inner = circle(0, b, r, 16), circle(0, b, r * 0.72, 16)
    elif p.sign == 'octagon':
        outer, inner = circle(0, b, r, 8), segment((-r * 0.6, b), (r * 0.6, b), r * 0.3)
    elif p.sign == 'triangle':
        outer = np.array([(-r, b + r * 0.8), (r, b + r * 0.8), (0, b - r)])
        inner = np.array([(-r * 0.6, b + r * 0.55), (r * 0.6, b + r * 0.55), (0, b - r * 0.5)])
    else:
        outer = np.array([(-r, b - r), (r, b - r), (r, b + r), (-r, b + r)])
        inner = outer * [0.8, 1] + [0, b * 0.2]
        canvas.fill([board(view, p.x, z, outer)], (240, 240, 240), SIGN)
        outer = inner
        inner = segment((-r * 0.4, b), (r * 0.4, b), r * 0.2)
    canvas.fill([board(view, p.x, z, outer)], p.sign_colour, SIGN)
    canvas.fill([board(view, p.x, z, inner)], (240, 240, 240))


def draw_car(view: View, canvas: Canvas, m: Mover, x: float, z: float) -> None:
    body = m.colours[0]
    x0, x1 = x - m.width / 2, x + m.width / 2
    belt, top, length = 0.3 + 0.62 * (m.height - 0.3) / 1.2 * 0.85, m.height, m.length
    side = 'left' if x > view.x else 'right'
    xs = x0 if side == 'left' else x1
    faces = box_faces(x0, x1, 0.28, belt, z, z + length)
    glass = (40, 48, 58)
    # Wheels first, so the body overlaps their tops.
    wheels = [view.polygon(np.stack([np.full(12, xs), 0.33 + 0.33 * np.sin(a),
                                     zw + 0.33 * np.cos(a)], 1))
              for zw in (z + 0.8, z + length - 0.8)
              for a in [np.linspace(0, 2 * np.pi, 12, endpoint=False)]]
    wheels += [view.polygon([(wx, 0, z + 0.05), (wx + 0.3, 0, z + 0.05), (wx + 0.3, 0.4, z + 0.05),
                             (wx, 0.4, z + 0.05)]) for wx in (x0 + 0.1, x1 - 0.4)]
    canvas.fill(wheels, (22, 22, 24), CAR)
    if belt < view.h:
        canvas.fill([view.polygon(faces['top'])], scaled(body, 1.1), CAR)
    canvas.fill([view.polygon(faces[side])], scaled(body, 0.8), CAR)
    canvas.fill([view.polygon(faces['near'])], body, CAR)
    # Cabin: sloped glass front/back, glass sides, roof in body colour.
    ci0, ci1 = x0 + 0.12, x1 - 0.12
    zc0, zc1, zc2, zc3 = z + 0.18 * length, z + 0.32 * length, z + 0.72 * length, z + 0.85 * length
    cs = ci0 if side == 'left' else ci1
    canvas.fill([view.polygon([(cs, belt, zc0), (cs, top, zc1), (cs, top, zc2), (cs, belt, zc3)])],
                glass, CAR)
    canvas.fill([view.polygon([(ci0, top, zc1), (ci1, top, zc1), (ci1, top, zc2),
                               (ci0, top, zc2)])], body, CAR)
    canvas.fill([view.polygon([(ci0, belt, zc0), (ci1, belt, zc0), (ci1, top, zc1),
                               (ci0, top, zc1)])], scaled(glass, 1.3), CAR)
    # Lamps and number plate on the face we see (image only).
    lamp = (250, 245, 210) if m.vz < 0 else (200, 20, 25)
    ly = belt - 0.22
    canvas.fill([view.polygon([(lx, ly, z - 0.01), (lx + 0.3, ly, z - 0.01),
                               (lx + 0.3, ly + 0.14, z - 0.01), (lx, ly + 0.14, z - 0.01)])
                 for lx in (x0 + 0.1, x1 - 0.4)], lamp)
    canvas.fill([view.polygon([(x - 0.25, 0.4, z - 0.01), (x + 0.25, 0.4, z - 0.01),
                               (x + 0.25, 0.52, z - 0.01), (x - 0.25, 0.52, z - 0.01)])],
                (235, 235, 225))


def _walk(t: float, m: Mover, speed: float) -> float:
    return math.sin(m.phase + t * 2.0 * max(abs(speed), 0.3) * 1.6)


def draw_pedestrian(view: View, canvas: Canvas, m: Mover, x: float, z: float, t: float) -> None:
    shirt, trousers, skin, hair = m.colours
    h = m.height
    hip, shoulder = 0.5 * h, 0.8 * h
    swing = _walk(t, m, m.vz or m.vx)
    if m.vx:    # crossing: seen side-on, legs and arms swing in the image plane
        d = math.copysign(1, m.vx)
        step = 0.28 * h * swing
        legs = [segment((0, hip), (step * d, 0.02), 0.18),
                segment((0, hip), (-step * d, 0.02), 0.18)]
        torso = np.array([(-0.16, hip), (0.16, hip), (0.17, shoulder), (-0.17, shoulder)])
        arms = [segment((0, shoulder - 0.05), (-step * 0.7 * d, hip), 0.11)]
    else:       # walking along the street: seen from the front or back
        lift = 0.04 * h * swing
        legs = [segment((-0.11, hip), (-0.12, 0.02 + max(lift, 0)), 0.18),
                segment((0.11, hip), (0.12, 0.02 + max(-lift, 0)), 0.18)]
        torso = np.array([(-0.2, hip), (0.2, hip), (0.25, shoulder), (-0.25, shoulder)])
        arms = [segment((-0.25, shoulder - 0.03), (-0.29, hip + 0.02), 0.11),
                segment((0.25, shoulder - 0.03), (0.29, hip + 0.02), 0.11)]
    canvas.fill([board(view, x, z, leg) for leg in legs], trousers, PEDESTRIAN)
    canvas.fill([board(view, x, z, torso)], shirt, PEDESTRIAN)
    canvas.fill([board(view, x, z, arm) for arm in arms], scaled(shirt, 0.85), PEDESTRIAN)
    canvas.fill([board(view, x, z, circle(0, shoulder + 0.13, 0.13, 10))], skin, PEDESTRIAN)
    hair_shape = [(-0.13, shoulder + 0.14), (0.13, shoulder + 0.14), (0.09, shoulder + 0.26),
                  (-0.09, shoulder + 0.26)]
    canvas.fill([board(view, x, z, hair_shape)], hair, PEDESTRIAN)


def draw_bicyclist(view: View, canvas: Canvas, m: Mover, x: float, z: float, t: float) -> None:
    jersey, trousers, skin, _ = m.colours
    crank = m.phase + t * 5.0
    polys = []
    if m.vx:    # crossing: side-on bicycle with both wheels
        d = math.copysign(1, m.vx)
        tyres = [circle(-0.52 * d, 0.34, 0.34, 16), circle(0.52 * d, 0.34, 0.34, 16)]
        canvas.fill([board(view, x, z, w) for w in tyres], (30, 30, 32), BICYCLIST)
        canvas.fill([board(view, x, z, circle(c * d, 0.34, 0.25, 12)) for c in (-0.52, 0.52)],
                    (140, 140, 145))
        frame = [segment((-0.52 * d, 0.34), (-0.12 * d, 0.9), 0.06),
                 segment((-0.12 * d, 0.9), (0.4 * d, 0.92), 0.06),
                 segment((0.4 * d, 0.92), (0.52 * d, 0.34), 0.06),
                 segment((0.0, 0.32), (-0.12 * d, 0.9), 0.06),
                 segment((0.0, 0.32), (0.4 * d, 0.92), 0.06),
                 segment((0.0, 0.32), (-0.52 * d, 0.34), 0.06)]
        canvas.fill([board(view, x, z, f) for f in frame], trousers, BICYCLIST)
        hip, shoulder, head = (-0.15 * d, 1.0), (0.15 * d, 1.45), (0.3 * d, 1.6)
        pedal = (0.17 * math.cos(crank) * d, 0.32 + 0.17 * math.sin(crank))
        knee = (0.1 * d, 0.72 + 0.05 * math.sin(crank))
        polys = [(segment(hip, knee, 0.14), trousers), (segment(knee, pedal, 0.12), trousers),
                 (np.array([(hip[0] - 0.1 * d, hip[1]), (hip[0] + 0.1 * d, hip[1] - 0.05),
                            (shoulder[0] + 0.08 * d, shoulder[1] - 0.05),
                            (shoulder[0] - 0.08 * d, shoulder[1] + 0.08)]), jersey),
                 (segment(shoulder, (0.42 * d, 1.0), 0.09), skin)]
    else:       # riding along the street: seen from behind or in front, wheel edge-on
        canvas.fill([board(view, x, z, np.array([(-0.06, 0), (0.06, 0), (0.06, 0.7),
                                                 (-0.06, 0.7)]))], (30, 30, 32), BICYCLIST)
        lift = 0.12 * math.sin(crank)
        hip, shoulder, head = (0.0, 1.0), (0.0, 1.42), (0.0, 1.6)
        polys = [(segment((-0.14, 1.0), (-0.17, 0.35 + lift), 0.17), trousers),
                 (segment((0.14, 1.0), (0.17, 0.35 - lift), 0.17), trousers),
                 (segment((-0.32, 1.02), (0.32, 1.02), 0.06), (40, 40, 40)),
                 (np.array([(-0.2, 0.95), (0.2, 0.95), (0.26, 1.45), (-0.26, 1.45)]), jersey),
                 (segment((-0.25, 1.42), (-0.32, 1.04), 0.11), jersey),
                 (segment((0.25, 1.42), (0.32, 1.04), 0.11), jersey),
                 (np.array([(-0.05, 0.74), (0.05, 0.74), (0.05, 0.82), (-0.05, 0.82)]),
                  (220, 30, 30))]
    for shape, colour in polys:
        canvas.fill([board(view, x, z, shape)], colour, BICYCLIST)
    canvas.fill([board(view, x, z, circle(head[0], head[1], 0.11, 10))], skin, BICYCLIST)
    helmet = np.array([(head[0] - 0.13, head[1]), (head[0] + 0.13, head[1]),
                       (head[0] + 0.09, head[1] + 0.14), (head[0] - 0.09, head[1] + 0.14)])
    canvas.fill([board(view, x, z, helmet)], jersey, BICYCLIST)
