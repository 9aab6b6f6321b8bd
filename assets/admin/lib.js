// The view toolkit: Preact with hooks, and htm for tagged-template markup (no build step).
import { h, render, Fragment, cloneElement, toChildArray } from "./vendor/preact.module.js";
import htm from "./vendor/htm.module.js";

export { render, Fragment, cloneElement, toChildArray };
export {
  useState, useEffect, useRef, useMemo, useCallback, useLayoutEffect,
} from "./vendor/hooks.module.js";
export const html = htm.bind(h);
