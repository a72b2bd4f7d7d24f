/*
 * flask_thrillconnect as an ES module: the same single instance as window.ThrillConnect.
 *
 *   import ThrillConnect from "/thrillconnect/static/thrillconnect/thrillconnect.mjs";
 *
 * The page still needs {{ thrillconnect.assets() }}: its script tag carries the configuration
 * (prefix, player, currency, CSRF token). Importing the classic script below runs it once; when
 * assets() already ran it, it returns at once, so there is never a second socket. Types:
 * thrillconnect.d.mts.
 */
import "./thrillconnect.js";

const ThrillConnect = window.ThrillConnect;

export { ThrillConnect };
export default ThrillConnect;
