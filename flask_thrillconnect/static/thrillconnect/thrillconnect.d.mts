/**
 * Types of thrillconnect.mjs: `import ThrillConnect from ".../thrillconnect.mjs"` gives the same
 * object as `window.ThrillConnect` (see thrillconnect.d.ts for the types themselves).
 */
import type { ThrillConnectApi } from "./thrillconnect.js";

export type * from "./thrillconnect.js";

declare const ThrillConnect: ThrillConnectApi;

export { ThrillConnect };
export default ThrillConnect;
