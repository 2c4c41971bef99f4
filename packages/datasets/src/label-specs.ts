/**
 * Label specifications as data, in one place: the Cityscapes label table (cityscapesScripts `labels.py`),
 * the SYNTHIA-RAND-CITYSCAPES id mapping and its 16/13-class evaluation subsets, and GTA5 (whose label PNGs
 * hold Cityscapes ids). Training ids are the 19 Cityscapes classes; 255 is ignore.
 */

export const IGNORE_INDEX = 255;

export interface CityscapesLabel {
  name: string;
  id: number;
  trainId: number;
  color: [number, number, number];
}

/** cityscapesScripts' table: name, id, trainId (255 = not evaluated), colour. */
export const CITYSCAPES_LABELS: readonly CityscapesLabel[] = [
  { name: 'unlabeled', id: 0, trainId: 255, color: [0, 0, 0] },
  { name: 'ego vehicle', id: 1, trainId: 255, color: [0, 0, 0] },
  { name: 'rectification border', id: 2, trainId: 255, color: [0, 0, 0] },
  { name: 'out of roi', id: 3, trainId: 255, color: [0, 0, 0] },
  { name: 'static', id: 4, trainId: 255, color: [0, 0, 0] },
  { name: 'dynamic', id: 5, trainId: 255, color: [111, 74, 0] },
  { name: 'ground', id: 6, trainId: 255, color: [81, 0, 81] },
  { name: 'road', id: 7, trainId: 0, color: [128, 64, 128] },
  { name: 'sidewalk', id: 8, trainId: 1, color: [244, 35, 232] },
  { name: 'parking', id: 9, trainId: 255, color: [250, 170, 160] },
  { name: 'rail track', id: 10, trainId: 255, color: [230, 150, 140] },
  { name: 'building', id: 11, trainId: 2, color: [70, 70, 70] },
  { name: 'wall', id: 12, trainId: 3, color: [102, 102, 156] },
  { name: 'fence', id: 13, trainId: 4, color: [190, 153, 153] },
  { name: 'guard rail', id: 14, trainId: 255, color: [180, 165, 180] },
  { name: 'bridge', id: 15, trainId: 255, color: [150, 100, 100] },
  { name: 'tunnel', id: 16, trainId: 255, color: [150, 120, 90] },
  { name: 'pole', id: 17, trainId: 5, color: [153, 153, 153] },
  { name: 'polegroup', id: 18, trainId: 255, color: [153, 153, 153] },
  { name: 'traffic light', id: 19, trainId: 6, color: [250, 170, 30] },
  { name: 'traffic sign', id: 20, trainId: 7, color: [220, 220, 0] },
  { name: 'vegetation', id: 21, trainId: 8, color: [107, 142, 35] },
  { name: 'terrain', id: 22, trainId: 9, color: [152, 251, 152] },
  { name: 'sky', id: 23, trainId: 10, color: [70, 130, 180] },
  { name: 'person', id: 24, trainId: 11, color: [220, 20, 60] },
  { name: 'rider', id: 25, trainId: 12, color: [255, 0, 0] },
  { name: 'car', id: 26, trainId: 13, color: [0, 0, 142] },
  { name: 'truck', id: 27, trainId: 14, color: [0, 0, 70] },
  { name: 'bus', id: 28, trainId: 15, color: [0, 60, 100] },
  { name: 'caravan', id: 29, trainId: 255, color: [0, 0, 90] },
  { name: 'trailer', id: 30, trainId: 255, color: [0, 0, 110] },
  { name: 'train', id: 31, trainId: 16, color: [0, 80, 100] },
  { name: 'motorcycle', id: 32, trainId: 17, color: [0, 0, 230] },
  { name: 'bicycle', id: 33, trainId: 18, color: [119, 11, 32] },
];

/** The 19 training classes in trainId order. */
export const CITYSCAPES_CLASSES: readonly string[] = CITYSCAPES_LABELS
  .filter((l) => l.trainId !== IGNORE_INDEX)
  .sort((a, b) => a.trainId - b.trainId)
  .map((l) => l.name);

/** Cityscapes palette indexed by trainId (0..18). */
export const CITYSCAPES_PALETTE: readonly [number, number, number][] = CITYSCAPES_LABELS
  .filter((l) => l.trainId !== IGNORE_INDEX)
  .sort((a, b) => a.trainId - b.trainId)
  .map((l) => l.color);

/** SYNTHIA-RAND-CITYSCAPES GT/LABELS id → Cityscapes trainId (as DAFormer's tools/convert_datasets/synthia.py). */
export const SYNTHIA_ID_TO_TRAIN_ID: Readonly<Record<number, number>> = {
  3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13, 18: 14, 19: 15,
  20: 16, 12: 17, 11: 18,
};

/** How a dataset's raw label values become training ids. */
export interface LabelSpec {
  name: string;
  /** Training classes, index = trainId. */
  classes: readonly string[];
  /** Colour per trainId. */
  palette: readonly [number, number, number][];
  ignoreIndex: number;
  /** raw value → trainId; values absent from the table are outside the spec. */
  rawToTrainId: ReadonlyMap<number, number>;
  /** Colour-coded labels (RGB PNGs): packed 0xRRGGBB → trainId, used instead of `rawToTrainId`. */
  colorToTrainId?: ReadonlyMap<number, number>;
  /** trainIds that count in this spec's evaluation protocol (e.g. SYNTHIA's 16 or 13). */
  evalClasses: readonly number[];
}

const ALL_19 = CITYSCAPES_CLASSES.map((_, i) => i);

function cityscapesIdMap(): Map<number, number> {
  const m = new Map<number, number>();
  for (const l of CITYSCAPES_LABELS) m.set(l.id, l.trainId);
  m.set(-1, IGNORE_INDEX);
  return m;
}

/** Cityscapes `_labelIds.png` (and GTA5 labels, which use Cityscapes ids). */
export const CITYSCAPES_IDS: LabelSpec = {
  name: 'cityscapes-ids', classes: CITYSCAPES_CLASSES, palette: CITYSCAPES_PALETTE, ignoreIndex: IGNORE_INDEX,
  rawToTrainId: cityscapesIdMap(), evalClasses: ALL_19,
};

/** Files that already hold trainIds (`_labelTrainIds.png`, ACDC/Dark Zurich `_gt_labelTrainIds.png`). */
export const CITYSCAPES_TRAIN_IDS: LabelSpec = {
  name: 'cityscapes-trainids', classes: CITYSCAPES_CLASSES, palette: CITYSCAPES_PALETTE, ignoreIndex: IGNORE_INDEX,
  rawToTrainId: new Map([...ALL_19.map((i) => [i, i] as [number, number]), [IGNORE_INDEX, IGNORE_INDEX]]),
  evalClasses: ALL_19,
};

export const GTA5_LABELS: LabelSpec = { ...CITYSCAPES_IDS, name: 'gta5' };

function synthiaIdMap(): Map<number, number> {
  const m = new Map<number, number>();
  for (let id = 0; id <= 22; id++) m.set(id, SYNTHIA_ID_TO_TRAIN_ID[id] ?? IGNORE_INDEX);
  return m;
}

const name = (c: string) => CITYSCAPES_CLASSES.indexOf(c);
/** SYNTHIA has no terrain, truck or train: the 16-class protocol drops them. */
export const SYNTHIA_16_CLASSES = ALL_19.filter((i) => ![name('terrain'), name('truck'), name('train')].includes(i));
/** The 13-class protocol further drops wall, fence and pole. */
export const SYNTHIA_13_CLASSES = SYNTHIA_16_CLASSES.filter((i) => ![name('wall'), name('fence'), name('pole')].includes(i));

export const SYNTHIA_16: LabelSpec = {
  name: 'synthia-16', classes: CITYSCAPES_CLASSES, palette: CITYSCAPES_PALETTE, ignoreIndex: IGNORE_INDEX,
  rawToTrainId: synthiaIdMap(), evalClasses: SYNTHIA_16_CLASSES,
};
export const SYNTHIA_13: LabelSpec = { ...SYNTHIA_16, name: 'synthia-13', evalClasses: SYNTHIA_13_CLASSES };

/** A dense lookup table raw value → trainId for fast conversion (values ≥ size are outside the spec). */
export function lookupTable(spec: LabelSpec, size = 65536): Int32Array {
  const lut = new Int32Array(size).fill(-1);
  for (const [raw, train] of spec.rawToTrainId) if (raw >= 0 && raw < size) lut[raw] = train;
  return lut;
}
