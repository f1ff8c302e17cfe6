/** The published names of the tools whose default names contain `/`. */
export interface ToolNames {
  environmentAdd: string;
  environmentRemove: string;
  environmentList: string;
  threadList: string;
  threadClose: string;
  turnInterrupt: string;
}

/**
 * The default names follow the Codex app-server methods (`environment/add`, …); `portable`
 * publishes `environment_add`, … instead, for hosts that accept only `[A-Za-z0-9_-]` in tool names.
 */
export function toolNames(portable: boolean): ToolNames {
  const separator = portable ? '_' : '/';
  return {
    environmentAdd: `environment${separator}add`,
    environmentRemove: `environment${separator}remove`,
    environmentList: `environment${separator}list`,
    threadList: `thread${separator}list`,
    threadClose: `thread${separator}close`,
    turnInterrupt: `turn${separator}interrupt`,
  };
}
