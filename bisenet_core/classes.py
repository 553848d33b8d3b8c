"""Class lists and colour palettes of the datasets we train on: the one place they are written.

Each entry is (name, (r, g, b)). Training, export, the node and evaluation all read these
through a ModelSpec, never from a copy.
"""
from __future__ import annotations

IGNORE_INDEX = 255

# CamVid, the common 11-class set (SegNet's layout); void -> IGNORE_INDEX.
CAMVID = (
    ('sky', (128, 128, 128)),
    ('building', (128, 0, 0)),
    ('pole', (192, 192, 128)),
    ('road', (128, 64, 128)),
    ('sidewalk', (0, 0, 192)),
    ('tree', (128, 128, 0)),
    ('sign_symbol', (192, 128, 128)),
    ('fence', (64, 64, 128)),
    ('car', (64, 0, 128)),
    ('pedestrian', (64, 64, 0)),
    ('bicyclist', (0, 128, 192)),
)

# Cityscapes, the 19 training classes (train ids 0..18).
CITYSCAPES = (
    ('road', (128, 64, 128)),
    ('sidewalk', (244, 35, 232)),
    ('building', (70, 70, 70)),
    ('wall', (102, 102, 156)),
    ('fence', (190, 153, 153)),
    ('pole', (153, 153, 153)),
    ('traffic_light', (250, 170, 30)),
    ('traffic_sign', (220, 220, 0)),
    ('vegetation', (107, 142, 35)),
    ('terrain', (152, 251, 152)),
    ('sky', (70, 130, 180)),
    ('person', (220, 20, 60)),
    ('rider', (255, 0, 0)),
    ('car', (0, 0, 142)),
    ('truck', (0, 0, 70)),
    ('bus', (0, 60, 100)),
    ('train', (0, 80, 100)),
    ('motorcycle', (0, 0, 230)),
    ('bicycle', (119, 11, 32)),
)


def generated_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """A deterministic, well-spread palette (PASCAL VOC bit-interleaving) for any class count."""
    palette = []
    for label in range(num_classes):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)


# CamVid's original 32 colour-coded classes (RGB of the `<name>_L.png` labels) -> the 11-class
# ids above, SegNet's grouping (as in Brostow et al.'s label_colors.txt); Void -> IGNORE_INDEX.
CAMVID32_TO_11 = (
    ('Animal', (64, 128, 64), 'pedestrian'),
    ('Archway', (192, 0, 128), 'building'),
    ('Bicyclist', (0, 128, 192), 'bicyclist'),
    ('Bridge', (0, 128, 64), 'building'),
    ('Building', (128, 0, 0), 'building'),
    ('Car', (64, 0, 128), 'car'),
    ('CartLuggagePram', (64, 0, 192), 'pedestrian'),
    ('Child', (192, 128, 64), 'pedestrian'),
    ('Column_Pole', (192, 192, 128), 'pole'),
    ('Fence', (64, 64, 128), 'fence'),
    ('LaneMkgsDriv', (128, 0, 192), 'road'),
    ('LaneMkgsNonDriv', (192, 0, 64), 'road'),
    ('Misc_Text', (128, 128, 64), 'sign_symbol'),
    ('MotorcycleScooter', (192, 0, 192), 'bicyclist'),
    ('OtherMoving', (128, 64, 64), 'car'),
    ('ParkingBlock', (64, 192, 128), 'sidewalk'),
    ('Pedestrian', (64, 64, 0), 'pedestrian'),
    ('Road', (128, 64, 128), 'road'),
    ('RoadShoulder', (128, 128, 192), 'sidewalk'),
    ('Sidewalk', (0, 0, 192), 'sidewalk'),
    ('SignSymbol', (192, 128, 128), 'sign_symbol'),
    ('Sky', (128, 128, 128), 'sky'),
    ('SUVPickupTruck', (64, 128, 192), 'car'),
    ('TrafficCone', (0, 0, 64), 'pole'),
    ('TrafficLight', (0, 64, 64), 'sign_symbol'),
    ('Train', (192, 64, 128), 'car'),
    ('Tree', (128, 128, 0), 'tree'),
    ('Truck_Bus', (192, 128, 192), 'car'),
    ('Tunnel', (64, 0, 64), 'building'),
    ('VegetationMisc', (192, 192, 0), 'tree'),
    ('Void', (0, 0, 0), None),
    ('Wall', (64, 192, 0), 'building'),
)

# COCO-Stuff 164k: (COCO-Stuff id, name) of the 171 classes in use, in id order. Ids 1..91 are
# COCO things (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91 were never annotated), 92..182 stuff.
# The stuffthingmaps PNGs store id - 1; the contiguous class index is the position here.
COCOSTUFF_IDS = (
    (1, 'person'), (2, 'bicycle'), (3, 'car'), (4, 'motorcycle'), (5, 'airplane'), (6, 'bus'),
    (7, 'train'), (8, 'truck'), (9, 'boat'), (10, 'traffic_light'), (11, 'fire_hydrant'),
    (13, 'stop_sign'), (14, 'parking_meter'), (15, 'bench'), (16, 'bird'), (17, 'cat'),
    (18, 'dog'), (19, 'horse'), (20, 'sheep'), (21, 'cow'), (22, 'elephant'), (23, 'bear'),
    (24, 'zebra'), (25, 'giraffe'), (27, 'backpack'), (28, 'umbrella'), (31, 'handbag'),
    (32, 'tie'), (33, 'suitcase'), (34, 'frisbee'), (35, 'skis'), (36, 'snowboard'),
    (37, 'sports_ball'), (38, 'kite'), (39, 'baseball_bat'), (40, 'baseball_glove'),
    (41, 'skateboard'), (42, 'surfboard'), (43, 'tennis_racket'), (44, 'bottle'),
    (46, 'wine_glass'), (47, 'cup'), (48, 'fork'), (49, 'knife'), (50, 'spoon'), (51, 'bowl'),
    (52, 'banana'), (53, 'apple'), (54, 'sandwich'), (55, 'orange'), (56, 'broccoli'),
    (57, 'carrot'), (58, 'hot_dog'), (59, 'pizza'), (60, 'donut'), (61, 'cake'), (62, 'chair'),
    (63, 'couch'), (64, 'potted_plant'), (65, 'bed'), (67, 'dining_table'), (70, 'toilet'),
    (72, 'tv'), (73, 'laptop'), (74, 'mouse'), (75, 'remote'), (76, 'keyboard'),
    (77, 'cell_phone'), (78, 'microwave'), (79, 'oven'), (80, 'toaster'), (81, 'sink'),
    (82, 'refrigerator'), (84, 'book'), (85, 'clock'), (86, 'vase'), (87, 'scissors'),
    (88, 'teddy_bear'), (89, 'hair_drier'), (90, 'toothbrush'),
    (92, 'banner'), (93, 'blanket'), (94, 'branch'), (95, 'bridge'), (96, 'building-other'),
    (97, 'bush'), (98, 'cabinet'), (99, 'cage'), (100, 'cardboard'), (101, 'carpet'),
    (102, 'ceiling-other'), (103, 'ceiling-tile'), (104, 'cloth'), (105, 'clothes'),
    (106, 'clouds'), (107, 'counter'), (108, 'cupboard'), (109, 'curtain'), (110, 'desk-stuff'),
    (111, 'dirt'), (112, 'door-stuff'), (113, 'fence'), (114, 'floor-marble'),
    (115, 'floor-other'), (116, 'floor-stone'), (117, 'floor-tile'), (118, 'floor-wood'),
    (119, 'flower'), (120, 'fog'), (121, 'food-other'), (122, 'fruit'),
    (123, 'furniture-other'), (124, 'grass'), (125, 'gravel'), (126, 'ground-other'),
    (127, 'hill'), (128, 'house'), (129, 'leaves'), (130, 'light'), (131, 'mat'),
    (132, 'metal'), (133, 'mirror-stuff'), (134, 'moss'), (135, 'mountain'), (136, 'mud'),
    (137, 'napkin'), (138, 'net'), (139, 'paper'), (140, 'pavement'), (141, 'pillow'),
    (142, 'plant-other'), (143, 'plastic'), (144, 'platform'), (145, 'playingfield'),
    (146, 'railing'), (147, 'railroad'), (148, 'river'), (149, 'road'), (150, 'rock'),
    (151, 'roof'), (152, 'rug'), (153, 'salad'), (154, 'sand'), (155, 'sea'), (156, 'shelf'),
    (157, 'sky-other'), (158, 'skyscraper'), (159, 'snow'), (160, 'solid-other'),
    (161, 'stairs'), (162, 'stone'), (163, 'straw'), (164, 'structural-other'), (165, 'table'),
    (166, 'tent'), (167, 'textile-other'), (168, 'towel'), (169, 'tree'), (170, 'vegetable'),
    (171, 'wall-brick'), (172, 'wall-concrete'), (173, 'wall-other'), (174, 'wall-panel'),
    (175, 'wall-stone'), (176, 'wall-tile'), (177, 'wall-wood'), (178, 'water-other'),
    (179, 'waterdrops'), (180, 'window-blind'), (181, 'window-other'), (182, 'wood'),
)

# COCO-Stuff 164k, 171 classes, palette generated (the dataset defines none).
COCOSTUFF = tuple(zip((name for _, name in COCOSTUFF_IDS),
                      generated_palette(len(COCOSTUFF_IDS))))


# ADE20K SceneParsing (ADEChallengeData2016), the 150 benchmark classes in id order (label
# PNG value - 1; 0 = "other" -> IGNORE_INDEX). Names: the first name of each class in the
# benchmark's objectInfo150 list (as mmsegmentation's ADE20KDataset), spaces written as '_';
# palette: the benchmark's color150 (as mmsegmentation).
ADE20K = (
    ('wall', (120, 120, 120)), ('building', (180, 120, 120)), ('sky', (6, 230, 230)),
    ('floor', (80, 50, 50)), ('tree', (4, 200, 3)), ('ceiling', (120, 120, 80)),
    ('road', (140, 140, 140)), ('bed', (204, 5, 255)), ('windowpane', (230, 230, 230)),
    ('grass', (4, 250, 7)), ('cabinet', (224, 5, 255)), ('sidewalk', (235, 255, 7)),
    ('person', (150, 5, 61)), ('earth', (120, 120, 70)), ('door', (8, 255, 51)),
    ('table', (255, 6, 82)), ('mountain', (143, 255, 140)), ('plant', (204, 255, 4)),
    ('curtain', (255, 51, 7)), ('chair', (204, 70, 3)), ('car', (0, 102, 200)),
    ('water', (61, 230, 250)), ('painting', (255, 6, 51)), ('sofa', (11, 102, 255)),
    ('shelf', (255, 7, 71)), ('house', (255, 9, 224)), ('sea', (9, 7, 230)),
    ('mirror', (220, 220, 220)), ('rug', (255, 9, 92)), ('field', (112, 9, 255)),
    ('armchair', (8, 255, 214)), ('seat', (7, 255, 224)), ('fence', (255, 184, 6)),
    ('desk', (10, 255, 71)), ('rock', (255, 41, 10)), ('wardrobe', (7, 255, 255)),
    ('lamp', (224, 255, 8)), ('bathtub', (102, 8, 255)), ('railing', (255, 61, 6)),
    ('cushion', (255, 194, 7)), ('base', (255, 122, 8)), ('box', (0, 255, 20)),
    ('column', (255, 8, 41)), ('signboard', (255, 5, 153)), ('chest_of_drawers', (6, 51, 255)),
    ('counter', (235, 12, 255)), ('sand', (160, 150, 20)), ('sink', (0, 163, 255)),
    ('skyscraper', (140, 140, 140)), ('fireplace', (250, 10, 15)), ('refrigerator', (20, 255, 0)),
    ('grandstand', (31, 255, 0)), ('path', (255, 31, 0)), ('stairs', (255, 224, 0)),
    ('runway', (153, 255, 0)), ('case', (0, 0, 255)), ('pool_table', (255, 71, 0)),
    ('pillow', (0, 235, 255)), ('screen_door', (0, 173, 255)), ('stairway', (31, 0, 255)),
    ('river', (11, 200, 200)), ('bridge', (255, 82, 0)), ('bookcase', (0, 255, 245)),
    ('blind', (0, 61, 255)), ('coffee_table', (0, 255, 112)), ('toilet', (0, 255, 133)),
    ('flower', (255, 0, 0)), ('book', (255, 163, 0)), ('hill', (255, 102, 0)),
    ('bench', (194, 255, 0)), ('countertop', (0, 143, 255)), ('stove', (51, 255, 0)),
    ('palm', (0, 82, 255)), ('kitchen_island', (0, 255, 41)), ('computer', (0, 255, 173)),
    ('swivel_chair', (10, 0, 255)), ('boat', (173, 255, 0)), ('bar', (0, 255, 153)),
    ('arcade_machine', (255, 92, 0)), ('hovel', (255, 0, 255)), ('bus', (255, 0, 245)),
    ('towel', (255, 0, 102)), ('light', (255, 173, 0)), ('truck', (255, 0, 20)),
    ('tower', (255, 184, 184)), ('chandelier', (0, 31, 255)), ('awning', (0, 255, 61)),
    ('streetlight', (0, 71, 255)), ('booth', (255, 0, 204)),
    ('television_receiver', (0, 255, 194)), ('airplane', (0, 255, 82)),
    ('dirt_track', (0, 10, 255)), ('apparel', (0, 112, 255)), ('pole', (51, 0, 255)),
    ('land', (0, 194, 255)), ('bannister', (0, 122, 255)), ('escalator', (0, 255, 163)),
    ('ottoman', (255, 153, 0)), ('bottle', (0, 255, 10)), ('buffet', (255, 112, 0)),
    ('poster', (143, 255, 0)), ('stage', (82, 0, 255)), ('van', (163, 255, 0)),
    ('ship', (255, 235, 0)), ('fountain', (8, 184, 170)), ('conveyer_belt', (133, 0, 255)),
    ('canopy', (0, 255, 92)), ('washer', (184, 0, 255)), ('plaything', (255, 0, 31)),
    ('swimming_pool', (0, 184, 255)), ('stool', (0, 214, 255)), ('barrel', (255, 0, 112)),
    ('basket', (92, 255, 0)), ('waterfall', (0, 224, 255)), ('tent', (112, 224, 255)),
    ('bag', (70, 184, 160)), ('minibike', (163, 0, 255)), ('cradle', (153, 0, 255)),
    ('oven', (71, 255, 0)), ('ball', (255, 0, 163)), ('food', (255, 204, 0)),
    ('step', (255, 0, 143)), ('tank', (0, 255, 235)), ('trade_name', (133, 255, 0)),
    ('microwave', (255, 0, 235)), ('pot', (245, 0, 255)), ('animal', (255, 0, 122)),
    ('bicycle', (255, 245, 0)), ('lake', (10, 190, 212)), ('dishwasher', (214, 255, 0)),
    ('screen', (0, 204, 255)), ('blanket', (20, 0, 255)), ('sculpture', (255, 255, 0)),
    ('hood', (0, 153, 255)), ('sconce', (0, 41, 255)), ('vase', (0, 255, 204)),
    ('traffic_light', (41, 0, 255)), ('tray', (41, 255, 0)), ('ashcan', (173, 0, 255)),
    ('fan', (0, 245, 255)), ('pier', (71, 0, 255)), ('crt_screen', (122, 0, 255)),
    ('plate', (0, 255, 184)), ('monitor', (0, 92, 255)), ('bulletin_board', (184, 255, 0)),
    ('shower', (0, 133, 255)), ('radiator', (255, 214, 0)), ('glass', (25, 194, 194)),
    ('clock', (102, 255, 0)), ('flag', (92, 0, 255)),
)


DATASETS = {
    'ade20k': ADE20K,
    'camvid': CAMVID,
    'cityscapes': CITYSCAPES,
    'cocostuff': COCOSTUFF,
}
