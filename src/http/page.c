/* The status page (src/http/page.html), built into the library as
 * pn__http_page .. pn__http_page_end (the Makefile rebuilds this object when
 * the page changes; the path is relative to the top of the tree, where make
 * runs). */
__asm__(".pushsection .rodata\n"
	".balign 16\n"
	".globl pn__http_page\n"
	".hidden pn__http_page\n"
	".type pn__http_page, @object\n"
	"pn__http_page:\n"
	".incbin \"src/http/page.html\"\n"
	".globl pn__http_page_end\n"
	".hidden pn__http_page_end\n"
	"pn__http_page_end:\n"
	".byte 0\n"
	".popsection\n");
