/** Version shown by `--version` of both programs; kept in step with package.json by a test. */
export const VERSION = '0.1.0';
/** The zTOC build tool identifier AWS's CLI writes; we write the same so artifacts are byte-identical. */
export const BUILD_TOOL_IDENTIFIER = 'AWS SOCI CLI v0.2';
