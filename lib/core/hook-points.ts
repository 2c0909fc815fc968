// Hook-point names, derived from the engine's one table (native hookPoints()) plus the points the
// TS layer adds: embed (the layer-0 input), logits, and latent_proj (the vector fed at a latent step).
import { native } from './native.js';

const ENGINE = native().hookPoints();

/** Points that exist once per layer; named POINT.LAYER (e.g. resid_post.3). */
export const LAYER_POINTS: readonly string[] = ENGINE.filter((p) => p.perLayer).map((p) => p.name);
/** Points without a layer. embed is the layer-0 input (equal to resid_pre.0). */
export const MODEL_POINTS: readonly string[] = ['embed', ...ENGINE.filter((p) => !p.perLayer).map((p) => p.name), 'logits'];
/** Points of the reasoning loop only: latent_proj is e_k = head(h_k), the vector fed at latent position k. */
export const REASONING_POINTS: readonly string[] = ['latent_proj'];

const layerAlt = LAYER_POINTS.join('|');
/** Any concrete point name the reasoning loop can capture. */
export const CAPTURE_POINT = new RegExp(`^(${[...MODEL_POINTS, ...REASONING_POINTS].join('|')}|(${layerAlt})\\.\\d+)$`);
/** A point an intervention can act at: embed or a layer point with its layer. */
export const EDIT_POINT = new RegExp(`^(embed|(${layerAlt})\\.\\d+)$`);
