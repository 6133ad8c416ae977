public enum ToolSupport {}
