public enum VMFSPlaceholder {}
