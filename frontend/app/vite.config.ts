import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Built into frontend/static/frontend/dist and served by Django (django-vite reads the manifest;
// ServeStatic serves the files under /static/frontend/dist/).
export default defineConfig({
  plugins: [react()],
  base: "/static/frontend/dist/",
  build: {
    outDir: "../static/frontend/dist",
    emptyOutDir: true,
    manifest: "manifest.json",
    sourcemap: "hidden",
    rollupOptions: {
      input: "src/main.tsx",
    },
  },
  server: {
    // `VITE_DEV_MODE=1 ./manage.py runserver` + `npm run dev` serves assets from here with HMR.
    origin: "http://localhost:5173",
  },
});
