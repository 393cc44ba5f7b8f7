"""`spr eval`: measure a grounding model with the same parsers and coordinate rules as training.

Two benchmarks: referring expression comprehension (:mod:`spr.eval.rec`, one box per expression,
accuracy at IoU 0.5-0.9 and mean IoU, per split) and grounded region descriptions on held-out region
tasks (:mod:`spr.eval.regions`). Converters turn RefCOCO/+/g and Flickr30k Entities annotations into the
REC jsonl format (:mod:`spr.eval.data`). Boxes are absolute pixels of the original image throughout.
"""
