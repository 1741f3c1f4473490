"""Plug-ins the platform did not foresee, each one file that registers itself when imported: a recipe
with three players (`three_players`) and a data source of video frames (`video_frames`). Used by
tests/test_platform.py to show that they train, resume, bundle, translate and export through the CLI
with no edit to cyclekit."""
