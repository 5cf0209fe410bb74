"""Analysis of trained runs (supplement sections B-E): robustness to input corruptions, Grad-CAM
attention, t-SNE of features, the train/test gap and a report that checks the paper's qualitative
findings on the data at hand. The networks they compare, and how, are in ``views``."""

from tgsemi.analysis.views import ROLES, View, as_runs, labels, predict_views, top1, views_of

__all__ = ["ROLES", "View", "as_runs", "labels", "predict_views", "top1", "views_of"]
