"""Scene model of a synthetic drive: a straight street laid out in world metres, seeded.

World axes: x to the right of the road centre line, y up from the ground, z forward along
the road. The camera drives forward along z; everything else is a function of time, so any
frame can be rendered on its own and two renders of the same seed agree byte for byte.

Objects are generated in 50 m chunks, each from its own random stream keyed by
(seed, family, chunk). A longer drive only adds chunks, so the first frames of a drive do
not depend on how many frames are asked for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CHUNK_M = 50.0
NEAR_M = 1.0    # near clipping plane
FAR_M = 110.0   # objects beyond this are hidden behind the distant skyline
OBJECT_FAR_M = 65.0   # poles and movers further away would be a few pixels: not drawn

# Classes in CamVid order (bisenet_core.classes.CAMVID); kept as names for readability.
SKY, BUILDING, POLE, ROAD, SIDEWALK, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)

# Appearance families: distinct enough per class to learn, varied enough to generalise.
BUILDING_COLOURS = ((150, 75, 60), (175, 110, 85), (200, 180, 150), (190, 160, 120),
                    (120, 120, 125), (170, 150, 140), (140, 95, 70), (215, 200, 175))
TREE_COLOURS = ((60, 105, 40), (75, 120, 45), (50, 90, 45), (90, 125, 55))
FENCE_COLOURS = ((120, 85, 55), (95, 110, 120), (60, 85, 60), (150, 120, 90))
POLE_COLOURS = ((105, 105, 110), (70, 80, 70), (45, 45, 50), (140, 140, 135))
CAR_COLOURS = ((200, 30, 35), (30, 60, 160), (230, 230, 230), (25, 25, 28), (170, 170, 175),
               (40, 110, 60), (210, 170, 40), (110, 30, 110), (90, 90, 100))
CLOTHES = ((30, 30, 40), (180, 40, 40), (40, 70, 150), (220, 220, 210), (90, 60, 40),
           (40, 110, 70), (200, 160, 40), (120, 120, 130), (150, 60, 120))
SKIN = ((230, 190, 160), (190, 140, 100), (120, 80, 55), (250, 215, 185))
# Time of day: (sky top, sky at the horizon), frame tint, brightness.
MOODS = {
    'day': (((70, 130, 215), (170, 205, 240)), (1.0, 1.0, 1.0), 1.0),
    'overcast': (((175, 185, 200), (215, 220, 228)), (0.97, 1.0, 1.03), 0.85),
    'dusk': (((90, 90, 160), (245, 160, 110)), (1.1, 0.95, 0.85), 0.7),
    'morning': (((120, 165, 225), (235, 225, 200)), (1.06, 1.02, 0.93), 0.95),
}
JERSEYS = ((250, 210, 0), (240, 90, 20), (0, 170, 210), (230, 30, 120), (120, 220, 40))


@dataclass(frozen=True)
class Look:
    """Lighting and surface colours of one drive (time of day, weather, town)."""

    sky_top: tuple
    sky_horizon: tuple
    tint: tuple          # per-channel gain of the whole frame
    brightness: float
    road: tuple
    sidewalk: tuple
    curb: tuple
    marking: tuple
    sun_side: int        # side (-1 left, +1 right) whose buildings cast shadows on the street
    shadow: float        # brightness factor inside shadows
    clouds: int


@dataclass(frozen=True)
class Street:
    """Geometry and motion of the drive: road widths, camera pose over time."""

    road_half: float     # road spans x in [-road_half, road_half]
    sidewalk: float      # sidewalk width each side
    cam_x: float
    cam_height: float
    horizon: float       # horizon row as a fraction of the image height
    speed: float         # camera speed, m/s
    sway: float          # yaw amplitude (rad): the vanishing point wanders
    sway_period: float
    sway_phase: float

    @property
    def kerb_out(self) -> float:
        """|x| of the building line (outer sidewalk edge)."""
        return self.road_half + self.sidewalk

    def camera_at(self, t: float) -> tuple[float, float, float]:
        """(x, z, yaw) of the camera at time t seconds."""
        phase = 2 * math.pi * t / self.sway_period + self.sway_phase
        x = self.cam_x + 0.3 * math.sin(0.7 * phase)
        return x, self.speed * t, self.sway * math.sin(phase)


@dataclass(frozen=True)
class Facade:
    """A vertical strip along the street at |x| = x: building front, tree row or fence."""

    kind: int            # BUILDING, TREE or FENCE
    side: int
    x: float
    z0: float
    z1: float
    height: float
    colour: tuple
    shade: float
    # building: (floor height, window width, window spacing, window colour)
    windows: tuple = ()
    # tree: heights of the bumpy crown every 1.5 m
    crown: tuple = ()


@dataclass(frozen=True)
class Pole:
    side: int
    x: float
    z: float
    height: float
    width: float
    colour: tuple
    arm: bool            # street lamp arm over the road
    sign: str            # '', 'circle', 'triangle', 'square', 'octagon', 'light'
    sign_size: float
    sign_height: float
    sign_colour: tuple


@dataclass(frozen=True)
class Mover:
    """A car, pedestrian or bicyclist: position is a function of time."""

    kind: int            # CAR, PEDESTRIAN or BICYCLIST
    x0: float
    z0: float
    vx: float
    vz: float
    length: float
    width: float
    height: float
    colours: tuple
    phase: float
    bob: float = 0.0     # amplitude of a slow along-road drift (lead cars)
    span: float = 0.0    # crossers wrap around in x within [-span, span]

    def position(self, t: float) -> tuple[float, float]:
        x = self.x0 + self.vx * t
        if self.span:
            x = (x + self.span) % (2 * self.span) - self.span
        z = self.z0 + self.vz * t + self.bob * math.sin(0.4 * t + self.phase)
        return x, z


@dataclass
class World:
    seed: int
    look: Look
    street: Street
    skyline: np.ndarray                      # (N, 2): x, height of the distant skyline
    facades: list = field(default_factory=list)
    poles: list = field(default_factory=list)
    movers: list = field(default_factory=list)
    markings: list = field(default_factory=list)   # ground quads (x0, x1, z0, z1), road colour
    _chunks: set = field(default_factory=set)

    def ensure(self, duration: float) -> None:
        """Generate every chunk that can be seen during the first `duration` seconds."""
        s = self.street
        # Movers travel; a chunk is needed if something born in it can come into view.
        lo = min(0.0, (s.speed - 10.0) * duration) - 20.0
        hi = (s.speed + 10.0) * duration + FAR_M + 20.0
        for chunk in range(int(math.floor(lo / CHUNK_M)), int(math.ceil(hi / CHUNK_M)) + 1):
            if chunk not in self._chunks:
                self._chunks.add(chunk)
                _fill_chunk(self, chunk)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _jitter(rng: np.random.Generator, colour, amount: float = 18.0) -> tuple:
    return tuple(int(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in colour)


def make_world(seed: int) -> World:
    """The per-drive constants: lighting, street shape, skyline. Chunks come with ensure()."""
    rng = np.random.default_rng([seed, 0])
    mood = _pick(rng, ('day', 'day', 'overcast', 'dusk', 'morning'))
    sky, tint, bright = MOODS[mood]
    look = Look(
        sky_top=_jitter(rng, sky[0], 12), sky_horizon=_jitter(rng, sky[1], 10),
        tint=tuple(float(v * rng.uniform(0.97, 1.03)) for v in tint),
        brightness=float(bright * rng.uniform(0.9, 1.1)),
        road=_jitter(rng, _pick(rng, ((80, 78, 84), (95, 92, 98), (70, 70, 75))), 8),
        sidewalk=_jitter(rng, _pick(rng, ((165, 150, 140), (150, 150, 155), (175, 130, 115))), 10),
        curb=_jitter(rng, (190, 190, 185), 10),
        marking=_jitter(rng, (235, 235, 225), 8),
        sun_side=int(rng.choice((-1, 1))),
        shadow=float(rng.uniform(0.5, 0.7) if mood != 'overcast' else 0.85),
        clouds=int(rng.integers(0, 6)))
    street = Street(
        road_half=float(rng.uniform(5.0, 6.5)), sidewalk=float(rng.uniform(3.5, 6.0)),
        cam_x=float(rng.uniform(1.0, 1.8)), cam_height=float(rng.uniform(1.3, 1.7)),
        horizon=float(rng.uniform(0.40, 0.48)), speed=float(rng.uniform(4.0, 7.0)),
        sway=float(rng.uniform(0.01, 0.06)), sway_period=float(rng.uniform(8.0, 20.0)),
        sway_phase=float(rng.uniform(0, 2 * math.pi)))
    xs = np.arange(-260.0, 260.0, 1.0)
    heights = np.repeat(rng.uniform(6.0, 30.0, size=len(xs) // 8 + 1), 8)[:len(xs)]
    skyline = np.stack([xs, heights], axis=1)
    return World(seed=seed, look=look, street=street, skyline=skyline)


def _fill_chunk(world: World, chunk: int) -> None:
    """Add the static street furniture and the movers born in one 50 m chunk."""
    s = world.street
    z_lo, z_hi = chunk * CHUNK_M, (chunk + 1) * CHUNK_M
    for side in (-1, 1):
        rng = np.random.default_rng([world.seed, 1, chunk & 0xFFFFFFFF, side + 1])
        _facades(world, rng, side, z_lo, z_hi)
        _poles(world, rng, side, z_lo, z_hi)
        _parked_cars(world, rng, side, z_lo, z_hi)
        _pedestrians(world, rng, side, z_lo, z_hi)
        _bicyclists(world, rng, side, z_lo, z_hi)
    rng = np.random.default_rng([world.seed, 2, chunk & 0xFFFFFFFF])
    _traffic(world, rng, chunk, z_lo, z_hi)
    # Road markings: dashed centre line, solid edge lines, now and then a zebra crossing.
    for z in np.arange(z_lo, z_hi, 6.0):
        world.markings.append((-0.08, 0.08, float(z), float(z) + 3.0))
    for side in (-1, 1):
        edge = side * (s.road_half - 0.35)
        world.markings.append((edge - 0.07, edge + 0.07, z_lo, z_hi))
    if rng.random() < 0.35:
        zc = float(rng.uniform(z_lo + 5, z_hi - 8))
        for x in np.arange(-s.road_half + 0.6, s.road_half - 0.6, 1.0):
            world.markings.append((float(x), float(x) + 0.5, zc, zc + 3.0))


def _facades(world, rng, side, z_lo, z_hi) -> None:
    s = world.street
    z = z_lo
    shade = 1.0 if side == world.look.sun_side else 0.8
    while z < z_hi:
        length = float(min(rng.uniform(8.0, 28.0), z_hi - z))
        kind = int(rng.choice((BUILDING, TREE, FENCE), p=(0.45, 0.25, 0.3)))
        x = s.kerb_out + (float(rng.uniform(0.0, 1.5)) if kind == BUILDING else 0.0)
        if kind == FENCE or (kind == TREE and rng.random() < 0.5):
            # Something behind low fences and tree rows, so no bare ground shows through.
            world.facades.append(_building(rng, side, x + rng.uniform(4.0, 8.0), z, z + length,
                                           shade, tall=True))
        if kind == BUILDING:
            world.facades.append(_building(rng, side, x, z, z + length, shade))
        elif kind == TREE:
            crown = tuple(float(v) for v in rng.uniform(4.0, 9.0) + rng.uniform(
                -1.2, 1.2, size=int(length / 1.5) + 2))
            world.facades.append(Facade(TREE, side, x, z, z + length, max(crown),
                                        _jitter(rng, _pick(rng, TREE_COLOURS), 12), shade,
                                        crown=crown))
        else:
            world.facades.append(Facade(FENCE, side, x, z, z + length,
                                        float(s.cam_height + rng.uniform(0.3, 1.2)),
                                        _jitter(rng, _pick(rng, FENCE_COLOURS), 15), shade))
        z += length


def _building(rng, side, x, z0, z1, shade, tall=False) -> Facade:
    height = float(rng.uniform(10.0, 28.0) if tall else rng.uniform(6.0, 22.0))
    glass = _pick(rng, ((45, 55, 70), (70, 90, 110), (30, 35, 40), (120, 140, 160)))
    windows = (float(rng.uniform(2.8, 3.6)), float(rng.uniform(0.8, 1.5)),
               float(rng.uniform(2.2, 3.5)), _jitter(rng, glass, 10))
    return Facade(BUILDING, side, float(x), float(z0), float(z1), height,
                  _jitter(rng, _pick(rng, BUILDING_COLOURS), 15), shade, windows=windows)


def _poles(world, rng, side, z_lo, z_hi) -> None:
    s = world.street
    z = z_lo + rng.uniform(0, 10)
    while z < z_hi:
        kind = _pick(rng, ('lamp', 'lamp', 'sign', 'sign', 'light', 'plain'))
        sign = ''
        if kind == 'sign' or (kind == 'lamp' and rng.random() < 0.4):
            sign = _pick(rng, ('circle', 'triangle', 'square', 'octagon'))
        elif kind == 'light':
            sign = 'light'
        sign_colour = {'circle': (200, 25, 30), 'triangle': (220, 30, 30), 'octagon': (200, 20, 25),
                       'square': _pick(rng, ((20, 70, 170), (240, 200, 20), (30, 130, 60))),
                       'light': (25, 25, 25), '': (0, 0, 0)}[sign]
        tall = kind in ('lamp', 'plain')
        height = float(rng.uniform(6.0, 8.5) if tall else rng.uniform(3.2, 4.5))
        world.poles.append(Pole(
            side=side, x=side * (s.road_half + rng.uniform(0.4, 0.8)), z=float(z), height=height,
            width=float(rng.uniform(0.35, 0.5)), colour=_jitter(rng, _pick(rng, POLE_COLOURS), 10),
            arm=kind == 'lamp', sign=sign, sign_size=float(rng.uniform(0.9, 1.3)),
            sign_height=float(rng.uniform(2.6, 3.2) if kind == 'lamp' else height - 0.5),
            sign_colour=sign_colour))
        z += rng.uniform(9.0, 18.0)


def _parked_cars(world, rng, side, z_lo, z_hi) -> None:
    s = world.street
    z = z_lo + rng.uniform(0, 4)
    while z < z_hi - 4:
        car = _car(rng, side * (s.road_half - 1.2), float(z), 0.0)
        if rng.random() < 0.3:
            world.movers.append(car)
        z += car.length + rng.uniform(1.0, 6.0)


def _car(rng, x, z, vz, bob=0.0) -> Mover:
    body = _jitter(rng, _pick(rng, CAR_COLOURS), 12)
    return Mover(CAR, float(x), float(z), 0.0, float(vz), float(rng.uniform(3.8, 4.8)),
                 float(rng.uniform(1.7, 1.9)), float(rng.uniform(1.35, 1.6)), (body,),
                 float(rng.uniform(0, 2 * math.pi)), bob=bob)


def _person_colours(rng) -> tuple:
    return (_pick(rng, CLOTHES), _pick(rng, CLOTHES), _pick(rng, SKIN),
            _pick(rng, ((30, 25, 20), (90, 60, 30), (200, 180, 120), (60, 60, 60))))


def _pedestrians(world, rng, side, z_lo, z_hi) -> None:
    s = world.street
    z = z_lo + rng.uniform(0, 5)
    while z < z_hi:
        x = side * (s.road_half + rng.uniform(0.8, s.sidewalk - 0.4))
        speed = float(rng.choice((-1, 1)) * rng.uniform(0.7, 1.6) if rng.random() < 0.85 else 0.0)
        world.movers.append(Mover(PEDESTRIAN, float(x), float(z), 0.0, speed, 0.3,
                                  float(rng.uniform(0.5, 0.6)), float(rng.uniform(1.6, 1.9)),
                                  _person_colours(rng), float(rng.uniform(0, 2 * math.pi))))
        z += rng.uniform(2.5, 8.0)
    if rng.random() < 0.3:   # someone crossing the street
        span = s.road_half + s.sidewalk * 0.5
        speed = side * float(rng.uniform(0.8, 1.5))
        world.movers.append(Mover(PEDESTRIAN, float(rng.uniform(-span, span)),
                                  float(rng.uniform(z_lo, z_hi)), speed, 0.0, 0.3, 0.55,
                                  float(rng.uniform(1.6, 1.9)),
                                  _person_colours(rng), float(rng.uniform(0, 6.3)), span=span))


def _bicyclists(world, rng, side, z_lo, z_hi) -> None:
    s = world.street
    z = z_lo + rng.uniform(0, 15)
    while z < z_hi:
        # Ride with the traffic of their side, between the lane and the parked cars.
        x = side * (s.road_half - rng.uniform(2.3, 2.7))
        if side > 0:    # keep clear of the camera's own line, we overtake them
            x = max(x, s.cam_x + 1.3)
        speed = side * float(rng.uniform(2.5, 5.5))
        world.movers.append(Mover(BICYCLIST, float(x), float(z), 0.0, speed, 1.75, 0.55,
                                  float(rng.uniform(1.65, 1.85)),
                                  (_pick(rng, JERSEYS),) + _person_colours(rng)[1:],
                                  float(rng.uniform(0, 2 * math.pi))))
        z += rng.uniform(12.0, 30.0)
    if rng.random() < 0.4:   # crossing: seen side-on, wheels and frame fully visible
        span = s.road_half + 1.0
        speed = side * float(rng.uniform(2.0, 4.0))
        world.movers.append(Mover(BICYCLIST, float(rng.uniform(-span, span)),
                                  float(rng.uniform(z_lo, z_hi)), speed, 0.0, 1.75, 0.55, 1.75,
                                  (_pick(rng, JERSEYS),) + _person_colours(rng)[1:],
                                  float(rng.uniform(0, 6.3)), span=span))


def _traffic(world, rng, chunk, z_lo, z_hi) -> None:
    s = world.street
    lane = s.road_half / 2 if s.road_half < 6.5 else 1.9
    # Oncoming cars in the left lane.
    z = z_lo + rng.uniform(0, 20)
    while z < z_hi:
        world.movers.append(_car(rng, -lane, float(z), -float(rng.uniform(5.0, 9.0))))
        z += rng.uniform(25.0, 60.0)
    # A lead car ahead in our lane keeps pace with the camera, drifting a little.
    if chunk == 0 and rng.random() < 0.7:
        world.movers.append(_car(rng, lane + rng.uniform(-0.3, 0.3), float(rng.uniform(14, 30)),
                                 s.speed, bob=float(rng.uniform(2.0, 6.0))))
