"""Pages and tables made from run directories and expected files: report, matrix, measurements, zoo catalog."""
